"""What learning a sampler costs: memory of one DDSS gradient step against K, and its time against
plain sampling. On the shipped digits UNet, GGDM+PRED+TIME, KID loss in the digits classifier space.

  python benchmarks/ddss_cost.py             # K = 5, 10, 20, 40 (a few minutes of compiling on 2 CPU cores)
  python benchmarks/ddss_cost.py --quick     # K = 5, 10

memory: XLA's compiled memory analysis (temp_size_in_bytes) of jit(grad(loss)) for each K, three ways:
  adjoint     remat=True, the default: explicit adjoint, K+1 states kept, network recomputed
  checkpoint  remat="checkpoint": jax.checkpoint on each scan step (saves the whole history buffer
              at every step)
  none        remat=False: plain reverse mode through the scan (every activation kept)
  and the growth per extra step (least-squares slope over K) in units of one state batch [B, 8, 8, 1].
  The adjoint's backward loop is left rolled here (unroll_backward=False) so the program size does
  not grow with K; the training default unrolls it on CPU for speed, at the same stored states.
time: one full DDSS step (loss, gradient, Adam update; the jitted training step) against one plain
  K-step sampling pass (forward only) of the same batch, XLA:CPU with the CLI's YNNPACK dots.
"""
from __future__ import annotations

import argparse
import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")  # as the CLI runs

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ddss import schedules  # noqa: E402
from ddss.data import digits as digits_data  # noqa: E402
from ddss.diagnostics import median_time  # noqa: E402
from ddss.metrics import features, kid  # noqa: E402
from ddss.models import digits, unet  # noqa: E402
from ddss.samplers import ggdm  # noqa: E402
from ddss.search import differentiable  # noqa: E402


def setup(k: int, batch: int):
    model = digits.load()
    extractor = features.get("digits")
    reals = jnp.asarray(extractor.features(digits_data.load("all")[0]), jnp.float32)
    params = ggdm.init(model.schedule, schedules.timesteps(model.schedule, "logsnr", k), family="ggdm+pred+time",
                       base="dpm_solver++")
    eps = lambda mp: (lambda x, t: unet.eps_fn(model.config, mp)(x, t))
    x = jax.random.normal(jax.random.key(0), (batch, 8, 8, 1))
    return model, extractor, reals, params, eps, x


def memory(ks, batch: int) -> None:
    print(f"Peak temporary memory of one gradient step (MiB), batch {batch}; one state = "
          f"{batch * 64 * 4 / 2**10:.0f} KiB")
    modes = {"adjoint": True, "checkpoint": "checkpoint", "none": False}
    table = {m: [] for m in modes}
    for k in ks:
        model, extractor, reals, params, eps, x = setup(k, batch)
        for name, remat in modes.items():
            def loss(learned, mp, x_):
                out = ggdm.sample(params.replace(learned=learned), eps(mp), x_, jax.random.key(1), remat=remat,
                                  unroll_backward=False)
                return kid.mmd2(extractor(jnp.clip(out, -1, 1)), reals[:batch])

            compiled = jax.jit(jax.grad(loss)).lower(params.learned, model.params, x).compile()
            table[name].append(compiled.memory_analysis().temp_size_in_bytes)
        print(f"  K={k:3d}  " + "  ".join(f"{n} {table[n][-1] / 2**20:8.2f}" for n in modes), flush=True)
    state = batch * 64 * 4
    for name in modes:
        slope = np.polyfit(np.asarray(ks, float), np.asarray(table[name], float), 1)[0]
        print(f"  {name:10s} growth per extra step: {slope / 2**10:9.1f} KiB = {slope / state:6.2f} states")


def timing(ks, batch: int, repeats: int) -> None:
    print(f"\nTime of one DDSS step against one K-step sampling pass, batch {batch}")
    for k in ks:
        model, extractor, reals, params, eps, x = setup(k, batch)
        sample = lambda learned, mp, x_, key: ggdm.sample(params.replace(learned=learned), eps(mp), x_, key)
        loss = differentiable.make_loss(sample, extractor, differentiable.LossConfig())
        optimizer = differentiable.make_optimizer(1e-2, 1.0, 100)
        step = jax.jit(differentiable.make_step(loss, optimizer, x.shape, len(reals), batch))
        state = differentiable.init_state(params.learned, optimizer, jax.random.key(0))
        t_step = median_time(lambda: step(state, model.params, reals), repeats=repeats)
        plain = jax.jit(lambda learned, mp, x_: sample(learned, mp, x_, jax.random.key(1)))
        t_plain = median_time(plain, params.learned, model.params, x, repeats=repeats)
        print(f"  K={k:3d}  DDSS step {t_step * 1e3:8.1f} ms   sampling pass {t_plain * 1e3:7.1f} ms   "
              f"ratio {t_step / t_plain:5.2f}×", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()
    ks = (5, 10) if args.quick else (5, 10, 20, 40)
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}")
    memory(ks, args.batch)
    timing(ks[:2] if not args.quick else ks, args.batch, repeats=3 if args.quick else 5)


if __name__ == "__main__":
    main()
