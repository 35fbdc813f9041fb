"""DDIM(η) on any decreasing timestep list (Song et al. 2021).

  x̂_0 = (x_k − √(1−ᾱ_k) ε̂) / √ᾱ_k,
  x_{k−1} = √ᾱ_{k−1} x̂_0 + √(1 − ᾱ_{k−1} − s_k²) ε̂ + s_k ξ_k,
  s_k = η √((1−ᾱ_{k−1})/(1−ᾱ_k)) √(1 − ᾱ_k/ᾱ_{k−1}),  ᾱ_0 := 1.

η = 0 is the deterministic sampler, η = 1 the DDPM posterior ("small" variance). With
clip_denoised=True, x̂_0 is clipped and ε̂ is kept as predicted (diffusers' DDIMScheduler with
`clip_sample=True, use_clipped_model_output=False`).
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules as sched_lib
from ddss.samplers import loop


@flax.struct.dataclass
class DDIMParams:
    schedule: sched_lib.Schedule
    timesteps: jax.Array  # [K] model times τ_K > ... > τ_1
    eta: jax.Array  # scalar ≥ 0 (≤ 1 keeps the mean coefficient real)

    @property
    def num_steps(self) -> int:
        return np.shape(self.timesteps)[0]


def init(schedule: sched_lib.Schedule, timesteps, *, eta: float = 0.0) -> DDIMParams:
    if loop.is_concrete(eta) and not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"DDIM's η must lie in [0, 1], got {float(eta)}.")
    return DDIMParams(
        schedule=schedule,
        timesteps=loop.as_timesteps(timesteps, schedule.num_timesteps),
        eta=np.asarray(eta, dtype=np.float64) if loop.is_concrete(eta) else eta,
    )


def noise_scale(ab, ab_prev, eta) -> jax.Array:
    """s_k = η √((1−ᾱ_{k−1})/(1−ᾱ_k)) √(1 − ᾱ_k/ᾱ_{k−1})."""
    return eta * loop.safe_sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev))


def sample(
    params: DDIMParams,
    eps_fn: loop.EpsFn,
    x_K: jax.Array,
    key: jax.Array,
    *,
    clip_denoised: bool = False,
    remat: bool = False,
    return_info: bool = False,
):
    """Runs K = len(params.timesteps) DDIM steps from x_K; returns x_0 (and a SampleInfo)."""
    loop.check_sample_inputs(params, x_K)
    t, ab, ab_prev = loop.times_and_alpha_bars(params.schedule, params.timesteps)
    s = noise_scale(ab, ab_prev, params.eta)
    inputs = dict(
        k=loop.step_indices(params.num_steps),
        t=t,
        alpha=jnp.sqrt(ab),
        sigma=jnp.sqrt(1.0 - ab),
        alpha_prev=jnp.sqrt(ab_prev),
        direction=loop.safe_sqrt(1.0 - ab_prev - s**2),
        s=s,
    )

    def step(x, c):
        eps = loop.model_output(eps_fn, x, c["t"])
        x0 = loop.predict_x0(x, eps, c["alpha"], c["sigma"], clip_denoised=clip_denoised)
        x = c["alpha_prev"] * x0 + c["direction"] * eps + loop.scaled_noise(key, c["k"], x, c["s"])
        return x, eps

    x0, info = loop.run(step, x_K, inputs, remat=remat, num_timesteps=params.schedule.num_timesteps)
    return (x0, info) if return_info else x0
