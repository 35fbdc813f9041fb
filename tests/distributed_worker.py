"""One process of tests/test_parallel.py's 2-process run (or, with JAX_NUM_PROCESSES unset, the 1-process
reference): a tiny DDSS step and a feature-statistics pass over a mesh of every process's devices;
prints their results as one JSON line."""
import json
import sys

from ddss import parallel

distributed = parallel.initialize()  # from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ddss import schedules  # noqa: E402
from ddss.data import digits as digits_data  # noqa: E402
from ddss.metrics import features, stats  # noqa: E402
from ddss.models import digits, unet  # noqa: E402
from ddss.samplers import ggdm  # noqa: E402
from ddss.search import differentiable  # noqa: E402


def main():
    model, extractor = digits.load(), features.get("digits")
    images = digits_data.load("all")[0][:64]
    with jax.set_mesh(parallel.make_mesh()):
        feats = extractor.features(images, batch_size=32)  # every process gets the whole result
        moments = stats.RunningStats().update(feats)
        reals = jnp.asarray(feats, jnp.float32)
        init = ggdm.init(model.schedule, schedules.timesteps(model.schedule, "logsnr", 3), family="ggdm+pred",
                         base="dpm_solver++")
        sample = lambda learned, mp, x, key: ggdm.sample(init.replace(learned=learned),
                                                         unet.eps_fn(model.config, mp), x, key)
        loss = differentiable.make_loss(sample, lambda x: extractor.apply(extractor.params, x),
                                        differentiable.LossConfig(kind="kid"))
        optimizer = differentiable.make_optimizer(1e-2, 1.0, 10)
        step = jax.jit(differentiable.make_step(loss, optimizer, (8, 8, 8, 1), len(reals), 16))
        state, metrics = step(differentiable.init_state(init.learned, optimizer, jax.random.key(3)), model.params,
                              reals)
        learned = parallel.to_host(state.learned)
    print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(), "devices": jax.device_count(),
                      "distributed": distributed, "kid": float(parallel.to_host(metrics["kid"])),
                      "mu": np.asarray(moments.mu).tolist(), "trace": float(np.trace(moments.sigma)),
                      "learned": {k: np.asarray(v).tolist() for k, v in learned.items()}}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
