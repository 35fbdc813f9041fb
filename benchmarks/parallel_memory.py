"""Per-device memory of a DDSS step and of a population chunk on 1, 2, 4 and 8 devices.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python benchmarks/parallel_memory.py

From XLA's compiled memory analysis (`compiled.memory_analysis()`: arguments, outputs and
temporaries of one device's program), for the digits model:

  DDSS step        GGDM+PRED at K = 4, KID loss through the digits feature network, batch 64,
                   rematerialised per step: the batch is split over the data axis;
  population chunk 16 candidates of a K = 4 DDIM search, 256 fitness samples each: the candidates
                   are split over every device.

The sharded parts (activations of the batch, candidates) should fall about as 1/devices; the
replicated ones (parameters, optimiser state, real features, the fitness noise) stay. On host
devices of one CPU the figures are XLA's plan, not a GPU's; the ratios are what carry over.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ddss import parallel, schedules
from ddss.data import digits as digits_data
from ddss.experiments import targets
from ddss.metrics import features, fid
from ddss.models import digits
from ddss.samplers import ggdm
from ddss.search import differentiable, evolution


def per_device_bytes(compiled) -> dict:
    m = compiled.memory_analysis()
    return {"arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
            "temporaries": m.temp_size_in_bytes}


def ddss_step(model, extractor, reals):
    init = ggdm.init(model.schedule, schedules.timesteps(model.schedule, "logsnr", 4), family="ggdm+pred",
                     base="dpm_solver++")
    eps = lambda mp: (lambda x, t: targets._unet_apply(model)(mp, x, t))

    def sample(learned, mp, x, key):
        return ggdm.sample(init.replace(learned=learned), eps(mp), x, key, remat=True)

    loss = differentiable.make_loss(sample, lambda x: extractor.apply(extractor.params, x),
                                    differentiable.LossConfig(kind="kid"))
    optimizer = differentiable.make_optimizer(1e-2, 1.0, 10)
    step = jax.jit(differentiable.make_step(loss, optimizer, (64, 8, 8, 1), len(reals), 64))
    state = differentiable.init_state(init.learned, optimizer, jax.random.key(0))
    return step.lower(state, model.params, reals).compile()


def population_chunk(model, extractor, mesh):
    stats_ = fid.Reference.from_stats(*fid.statistics(extractor.features(digits_data.load("all")[0])))
    fn = evolution.fitness_fn("ddim", model.schedule, targets._unet_apply_skip(model), extractor.apply, stats_,
                              clip_denoised=True)
    pop, whole = parallel.candidate_sharding(mesh), parallel.replicated(mesh)
    jitted = jax.jit(fn, in_shardings=(pop, pop, whole, whole, whole, whole), out_shardings=(pop, pop))
    t = np.tile(np.array([[900, 600, 300, 10]]), (16, 1))
    masks = np.zeros((16, 4, model.num_blocks), bool)
    noise = jnp.zeros((256, 8, 8, 1))
    return jitted.lower(t, masks, noise, jax.random.key(0), model.params, extractor.params).compile()


def main():
    model, extractor = digits.load(), features.get("digits")
    reals = jnp.asarray(extractor.features(digits_data.load("all")[0][:512]), jnp.float32)
    n = jax.device_count()
    print(f"device: {jax.devices()[0].device_kind} × {n}, jax {jax.__version__}")
    print("| work | devices | arguments MiB | outputs MiB | temporaries MiB | temporaries × devices / 1 device |")
    print("|---|---|---|---|---|---|")
    for name, build in (("DDSS step (batch 64)", lambda mesh: ddss_step(model, extractor, reals)),
                        ("population chunk (16 × 256)", lambda mesh: population_chunk(model, extractor, mesh))):
        base = None
        for d in (1, 2, 4, 8):
            if d > n:
                break
            mesh = parallel.make_mesh(devices=jax.devices()[:d])
            with jax.set_mesh(mesh):
                b = per_device_bytes(build(mesh))
            base = base or b["temporaries"]
            mib = lambda v: f"{v / 2**20:.2f}"
            print(f"| {name} | {d} | {mib(b['arguments'])} | {mib(b['outputs'])} | {mib(b['temporaries'])} | "
                  f"{b['temporaries'] * d / base:.2f} |")


if __name__ == "__main__":
    main()
