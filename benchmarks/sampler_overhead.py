"""Sampler overhead, compilations and rematerialisation memory of the baseline samplers.

  python benchmarks/sampler_overhead.py            # full figures (about a minute on 2 CPU cores)
  python benchmarks/sampler_overhead.py --quick    # fewer repeats

Prints, for each sampler family:
  overhead  = time(jitted K=10 sampler) / (10 × time(one jitted model call)), same batch;
              measured on the Gaussian-mixture model and on a small UNet-sized conv net. Goal ≤ 1.05.
  compiles  = XLA compilations while sampling with 100 different timestep lists of K = 10. Goal: 1.
  remat     = temporary memory of the gradient of a K-step sampler w.r.t. its timesteps, with and
              without per-step `jax.checkpoint`, from XLA's compiled memory analysis.
"""
from __future__ import annotations

import argparse

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules
from ddss.diagnostics import count_compilations, median_time
from ddss.models import gmm
from ddss.samplers import ddim, ddpm, dpm_solver

SAMPLERS = {"ddpm": (ddpm, {}), "ddim": (ddim, {}), "dpm-solver++(2m)": (dpm_solver, {"order": 2})}
K = 10


class SmallConvNet(nn.Module):
    """A UNet-sized stand-in: conv stem, 4 residual conv blocks with GroupNorm and a time embedding."""

    channels: int = 64

    @nn.compact
    def __call__(self, x, t):
        emb = nn.Dense(self.channels)(jnp.stack([jnp.sin(t / 100.0), jnp.cos(t / 100.0)], -1))
        h = nn.Conv(self.channels, (3, 3))(x)
        for _ in range(4):
            r = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(8)(h)))
            r = r + emb[:, None, None, :]
            r = nn.Conv(self.channels, (3, 3))(nn.silu(nn.GroupNorm(8)(r)))
            h = h + r
        return nn.Conv(x.shape[-1], (3, 3))(nn.silu(nn.GroupNorm(8)(h)))




def models(schedule):
    mixture = gmm.random_mixture(0, event_shape=(8, 8, 1), num_components=10)
    net = SmallConvNet()
    x_img = jnp.zeros((16, 32, 32, 3))
    variables = net.init(jax.random.key(0), x_img, jnp.zeros((16,)))
    return {
        "gmm 8x8x1, B=256": (gmm.eps_fn(mixture, schedule), jax.random.normal(jax.random.key(1), (256, 8, 8, 1))),
        "convnet 32x32x3, B=16": (lambda x, t: net.apply(variables, x, t), jax.random.normal(jax.random.key(1), x_img.shape)),
    }


def overhead(schedule, repeats: int) -> None:
    timesteps = schedules.timesteps(schedule, "quadratic", K)
    print(f"Sampler overhead, K = {K} (goal ≤ 1.05)")
    for model_name, (eps_fn, x) in models(schedule).items():
        model_call = jax.jit(eps_fn)
        t_model = median_time(model_call, x, jnp.full(x.shape[:1], 500.0), repeats=repeats * K)
        for name, (module, kwargs) in SAMPLERS.items():
            params = module.init(schedule, timesteps, **kwargs)
            sampler = jax.jit(lambda p, x, key, module=module: module.sample(p, eps_fn, x, key))
            t_sampler = median_time(sampler, params, x, jax.random.key(0), repeats=repeats)
            print(f"  {model_name:24s} {name:18s} sampler {t_sampler * 1e3:8.2f} ms   10 × model "
                  f"{K * t_model * 1e3:8.2f} ms   ratio {t_sampler / (K * t_model):.3f}")


def compilations(schedule) -> None:
    mixture = gmm.random_mixture(0, event_shape=(8, 8, 1), num_components=10)
    eps_fn = gmm.eps_fn(mixture, schedule)
    x, key = jnp.zeros((16, 8, 8, 1)), jax.random.key(0)
    rng = np.random.default_rng(0)
    print(f"Compilations over 100 different timestep lists of K = {K} (goal: 1)")
    for name, (module, kwargs) in SAMPLERS.items():
        def benchmarked_sampler(p, x, key, module=module):
            return module.sample(p, eps_fn, x, key)

        fn = jax.jit(benchmarked_sampler)
        with count_compilations() as counter:
            for _ in range(100):
                ts = np.sort(rng.choice(1000, K, replace=False))[::-1].astype(np.float64)
                jax.block_until_ready(fn(module.init(schedule, ts, **kwargs), x, key))
        print(f"  {name:18s} compilations: {counter.count('benchmarked_sampler')}")


def remat_memory(schedule) -> None:
    net = SmallConvNet()
    x = jnp.zeros((16, 32, 32, 3))
    variables = net.init(jax.random.key(0), x, jnp.zeros((16,)))
    eps_fn = lambda x, t: net.apply(variables, x, t)
    print("Gradient w.r.t. timesteps, temporary memory (XLA memory analysis), convnet B=16")
    for k in (5, 10, 20):
        params = ddim.init(schedule, schedules.timesteps(schedule, "quadratic", k))
        sizes = {}
        for remat in (False, True):
            loss = lambda p: jnp.mean(ddim.sample(p, eps_fn, x, jax.random.key(0), remat=remat) ** 2)
            compiled = jax.jit(jax.grad(loss)).lower(params).compile()
            sizes[remat] = compiled.memory_analysis().temp_size_in_bytes / 2**20
        print(f"  K = {k:3d}: no remat {sizes[False]:8.1f} MiB   remat {sizes[True]:8.1f} MiB   "
              f"ratio {sizes[True] / sizes[False]:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    schedule = schedules.linear_beta()
    overhead(schedule, repeats=5 if args.quick else 20)
    compilations(schedule)
    remat_memory(schedule)


if __name__ == "__main__":
    main()
