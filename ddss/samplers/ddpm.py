"""DDPM ancestral sampling (Ho et al. 2020) on any decreasing timestep list.

On a sub-sequence τ_K > ... > τ_1 the model is a DDPM with respaced betas
β'_k = 1 − ᾱ_k/ᾱ_{k−1} (as in improved-DDPM / ADM's respacing). Each step draws from
  x_{k−1} = μ̃_k(x_k, x̂_0) + √v_k ξ_k,
  μ̃_k = √ᾱ_{k−1} β'_k/(1−ᾱ_k) · x̂_0 + √(ᾱ_k/ᾱ_{k−1}) (1−ᾱ_{k−1})/(1−ᾱ_k) · x_k,
with v_k = β̃_k = (1−ᾱ_{k−1})/(1−ᾱ_k) β'_k ("small", the posterior variance; equals DDIM η = 1)
or v_k = β'_k ("large", DDPM's σ_t² = β_t, which Ho et al. used for CIFAR-10), or the variance the
model learned ("learned_range", improved-DDPM / ADM): the model function then returns 2C channels,
ε̂ and u, and log v_k = f log β'_k + (1 − f) log β̃_k with f = (u + 1)/2, β̃ of the *respaced*
schedule, clipped at the last step to the one before it as openai's code does. The last step
(to ᾱ_0 = 1) adds no noise and returns x̂_0. clip_denoised clips x̂_0 before the posterior mean.

Classifier guidance, `condition_mean` route (Dhariwal & Nichol 2021): with `cond_fn(x, t) -> s·∇ₓ
log p(y | x_t)`, each step's mean moves by v_k · cond_fn(x_k, τ_k) (guided-diffusion's p_sample).
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules as sched_lib
from ddss.samplers import loop

VARIANCES = ("small", "large", "learned_range")


@flax.struct.dataclass
class DDPMParams:
    schedule: sched_lib.Schedule
    timesteps: jax.Array  # [K] model times τ_K > ... > τ_1
    variance: str = flax.struct.field(pytree_node=False, default="small")

    @property
    def num_steps(self) -> int:
        return np.shape(self.timesteps)[0]


def init(schedule: sched_lib.Schedule, timesteps, *, variance: str = "small") -> DDPMParams:
    if variance not in VARIANCES:
        raise ValueError(f"Unknown DDPM variance {variance!r}; choose one of {VARIANCES}.")
    return DDPMParams(
        schedule=schedule,
        timesteps=loop.as_timesteps(timesteps, schedule.num_timesteps),
        variance=variance,
    )


def sample(
    params: DDPMParams,
    eps_fn: loop.EpsFn,
    x_K: jax.Array,
    key: jax.Array,
    *,
    clip_denoised: bool = False,
    remat: bool = False,
    return_info: bool = False,
    cond_fn=None,
):
    """Runs K = len(params.timesteps) ancestral steps from x_K; returns x_0 (and a SampleInfo).

    With variance="learned_range", `eps_fn(x, t)` returns the model's 2C channels (ε̂, then u)."""
    loop.check_sample_inputs(params, x_K)
    t, ab, ab_prev = loop.times_and_alpha_bars(params.schedule, params.timesteps)
    beta = 1.0 - ab / ab_prev
    posterior_var = (1.0 - ab_prev) / (1.0 - ab) * beta
    var = posterior_var if params.variance == "small" else beta.at[-1].set(0.0)
    learned = params.variance == "learned_range"
    # openai's posterior_log_variance_clipped: the clean step's (zero) variance replaced by the step before.
    min_log = jnp.log(posterior_var.at[-1].set(posterior_var[-2] if params.num_steps > 1 else beta[-1]))
    inputs = dict(
        k=loop.step_indices(params.num_steps),
        t=t,
        alpha=jnp.sqrt(ab),
        sigma=jnp.sqrt(1.0 - ab),
        coef_x0=jnp.sqrt(ab_prev) * beta / (1.0 - ab),
        coef_xt=jnp.sqrt(ab / ab_prev) * (1.0 - ab_prev) / (1.0 - ab),
        std=loop.safe_sqrt(var),
        var=var,
        max_log=jnp.log(beta),
        min_log=min_log,
        last=jnp.arange(params.num_steps) == params.num_steps - 1,
    )

    def step(x, c):
        if learned:
            out = loop.model_output(eps_fn, x, c["t"], channels=2 * x.shape[-1])
            eps, u = jnp.split(out, 2, axis=-1)
            frac = (u + 1.0) / 2.0
            var_k = jnp.exp(frac * c["max_log"] + (1.0 - frac) * c["min_log"])
            std_k = jnp.where(c["last"], 0.0, jnp.sqrt(var_k))
        else:
            eps = loop.model_output(eps_fn, x, c["t"])
            var_k, std_k = c["var"], c["std"]
        x0 = loop.predict_x0(x, eps, c["alpha"], c["sigma"], clip_denoised=clip_denoised)
        mean = c["coef_x0"] * x0 + c["coef_xt"] * x
        if cond_fn is not None:
            mean = mean + var_k * cond_fn(x, jnp.full(x.shape[:1], c["t"], x.dtype))
        if learned:
            x = mean + std_k * loop.step_noise(key, c["k"], x)
        else:
            x = mean + loop.scaled_noise(key, c["k"], x, std_k)
        return x, eps

    x0, info = loop.run(step, x_K, inputs, remat=remat, num_timesteps=params.schedule.num_timesteps)
    return (x0, info) if return_info else x0
