"""DPM-Solver++ multistep, data-prediction form (Lu et al. 2022), orders 2 and 3 ("2M", "3M").

With λ = log(α/σ), h = λ_{k−1} − λ_k and D0 = x̂_0(x_k, τ_k), one step is

  x_{k−1} = (σ_{k−1}/σ_k) x_k − α_{k−1}(e^{−h} − 1) D0                       (order 1)
            − ½ α_{k−1}(e^{−h} − 1) D1,  D1 = (D0 − D0_prev) / r0,  r0 = h_prev/h   (order 2)

and the third-order update of the reference implementation (diffusers' `dpmsolver++`,
`solver_type="midpoint"`). Orders warm up (step i uses order min(order, i)), the last step, which
goes to clean data (σ = 0, λ = ∞, so it returns x̂_0), is first order, and with order 3 and K < 15
the step before it is second order: diffusers' `lower_order_final` rules with
`final_sigmas_type="zero"`. clip_denoised clips every x̂_0.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules as sched_lib
from ddss.samplers import loop

ORDERS = (1, 2, 3)


@flax.struct.dataclass
class DPMSolverParams:
    schedule: sched_lib.Schedule
    timesteps: jax.Array  # [K] model times τ_K > ... > τ_1
    order: int = flax.struct.field(pytree_node=False, default=2)

    @property
    def num_steps(self) -> int:
        return np.shape(self.timesteps)[0]


def init(schedule: sched_lib.Schedule, timesteps, *, order: int = 2) -> DPMSolverParams:
    if order not in ORDERS:
        raise ValueError(f"DPM-Solver++ order must be one of {ORDERS}, got {order!r}.")
    return DPMSolverParams(
        schedule=schedule,
        timesteps=loop.as_timesteps(timesteps, schedule.num_timesteps),
        order=order,
    )


def step_orders(num_steps: int, order: int) -> np.ndarray:
    """The order used at each step, in loop order (static: depends on K and the order only)."""
    orders = np.minimum(np.arange(1, num_steps + 1), order)
    orders[-1] = 1
    if order == 3 and num_steps >= 2 and num_steps < 15:
        orders[-2] = min(orders[-2], 2)
    return orders


def step_coefficients(schedule: sched_lib.Schedule, timesteps) -> dict:
    """Per-step scalars of the update, all finite (the last step's h = ∞ is handled exactly)."""
    t, ab, ab_prev = loop.times_and_alpha_bars(schedule, timesteps)
    alpha, sigma = jnp.sqrt(ab), jnp.sqrt(1.0 - ab)
    alpha_prev, sigma_prev = jnp.sqrt(ab_prev), loop.safe_sqrt(1.0 - ab_prev)
    final = jnp.arange(t.shape[0]) == t.shape[0] - 1
    lam = jnp.log(alpha) - jnp.log(sigma)
    lam_prev = jnp.log(alpha_prev) - jnp.log(jnp.where(final, 1.0, sigma_prev))
    h = jnp.where(final, 1.0, lam_prev - lam)  # placeholder 1 at the last step: only order 1 runs there
    h_before = jnp.concatenate([h[:1], h[:-1]])  # previous step's h (placeholder at the first step)
    h_before2 = jnp.concatenate([h[:2], h[:-2]])[: t.shape[0]]
    expm1_neg_h = jnp.where(final, -1.0, jnp.expm1(-h))  # e^{−h} − 1, = −1 when λ_{k−1} = ∞
    return dict(
        t=t,
        alpha=alpha,
        sigma=sigma,
        ratio=sigma_prev / sigma,  # σ_{k−1}/σ_k (0 at the last step)
        phi=alpha_prev * expm1_neg_h,
        psi1=alpha_prev * (expm1_neg_h / h + 1.0),
        psi2=alpha_prev * ((expm1_neg_h + h) / h**2 - 0.5),
        r0=h_before / h,
        r1=h_before2 / h,
    )


def sample(
    params: DPMSolverParams,
    eps_fn: loop.EpsFn,
    x_K: jax.Array,
    key: jax.Array,
    *,
    clip_denoised: bool = False,
    remat: bool = False,
    return_info: bool = False,
):
    """Runs K = len(params.timesteps) multistep updates from x_K; returns x_0 (and a SampleInfo).

    The sampler is deterministic; `key` is accepted so every family shares one signature.
    """
    del key
    loop.check_sample_inputs(params, x_K)
    inputs = step_coefficients(params.schedule, params.timesteps)
    inputs["k"] = loop.step_indices(params.num_steps)
    inputs["order"] = jnp.asarray(step_orders(params.num_steps, params.order), jnp.int32)

    def step(state, c):
        x, m1, m2 = state
        eps = loop.model_output(eps_fn, x, c["t"])
        m0 = loop.predict_x0(x, eps, c["alpha"], c["sigma"], clip_denoised=clip_denoised)
        d1_0 = (m0 - m1) / c["r0"]
        d1_1 = (m1 - m2) / c["r1"]
        first = c["ratio"] * x - c["phi"] * m0
        second = first - 0.5 * c["phi"] * d1_0
        d1 = d1_0 + c["r0"] / (c["r0"] + c["r1"]) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (c["r0"] + c["r1"])
        third = first + c["psi1"] * d1 - c["psi2"] * d2
        x = jnp.where(c["order"] == 1, first, jnp.where(c["order"] == 2, second, third))
        return (x, m0, m1), eps

    zeros = jnp.zeros_like(x_K)
    (x0, _, _), info = loop.run(step, (x_K, zeros, zeros), inputs, remat=remat, num_timesteps=params.schedule.num_timesteps)
    return (x0, info) if return_info else x0
