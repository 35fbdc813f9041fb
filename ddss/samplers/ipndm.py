"""iPNDM: improved pseudo numerical methods (Zhang & Chen 2022, as used in DEIS and DPM-Solver-v3).

The deterministic DDIM transfer (the first-order exponential integrator in ε form),

  x̂_0 = (x_k − σ_k ε') / α_k,   x_{k−1} = α_{k−1} x̂_0 + σ_{k−1} ε',   ᾱ_0 := 1,

with ε' the Adams–Bashforth combination of the current and up to three previous model outputs
(newest first):

  order 1: ε_0                     order 2: (3 ε_0 − ε_1) / 2
  order 3: (23 ε_0 − 16 ε_1 + 5 ε_2) / 12
  order 4: (55 ε_0 − 59 ε_1 + 37 ε_2 − 9 ε_3) / 24

The coefficients are those of equal steps in the step index (not in time or λ), whatever the
timesteps. Step i (i = 1..K in loop order) uses order min(order, i): the first steps warm up with
the outputs they have; the last step, to clean data, uses the full order (no lower-order final).
Order 1 is DDIM (η = 0). K evaluations, no extra ones. With clip_denoised=True, x̂_0 is clipped and
ε' is kept as the direction (as DDIM does).
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules as sched_lib
from ddss.samplers import loop

ORDERS = (1, 2, 3, 4)

# Adams–Bashforth weights on (ε_0, ε_1, ε_2, ε_3), newest first, one row per order.
AB_WEIGHTS = np.array(
    [
        [1.0, 0.0, 0.0, 0.0],
        [3.0 / 2.0, -1.0 / 2.0, 0.0, 0.0],
        [23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0, 0.0],
        [55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0],
    ]
)


@flax.struct.dataclass
class IPNDMParams:
    schedule: sched_lib.Schedule
    timesteps: jax.Array  # [K] model times τ_K > ... > τ_1
    order: int = flax.struct.field(pytree_node=False, default=4)

    @property
    def num_steps(self) -> int:
        return np.shape(self.timesteps)[0]


def init(schedule: sched_lib.Schedule, timesteps, *, order: int = 4) -> IPNDMParams:
    if order not in ORDERS:
        raise ValueError(f"iPNDM order must be one of {ORDERS}, got {order!r}.")
    return IPNDMParams(
        schedule=schedule,
        timesteps=loop.as_timesteps(timesteps, schedule.num_timesteps),
        order=order,
    )


def step_orders(num_steps: int, order: int) -> np.ndarray:
    """The order used at each step, in loop order (static: depends on K and the order only)."""
    return np.minimum(np.arange(1, num_steps + 1), order)


def step_weights(num_steps: int, order: int) -> np.ndarray:
    """[K, 4] Adams–Bashforth weights of each step on (ε_0, ε_1, ε_2, ε_3), newest first."""
    return AB_WEIGHTS[step_orders(num_steps, order) - 1]


def sample(
    params: IPNDMParams,
    eps_fn: loop.EpsFn,
    x_K: jax.Array,
    key: jax.Array,
    *,
    clip_denoised: bool = False,
    remat: bool = False,
    return_info: bool = False,
):
    """Runs K = len(params.timesteps) iPNDM steps from x_K; returns x_0 (and a SampleInfo).

    The sampler is deterministic; `key` is accepted so every family shares one signature.
    """
    del key
    loop.check_sample_inputs(params, x_K)
    t, ab, ab_prev = loop.times_and_alpha_bars(params.schedule, params.timesteps)
    weights = step_weights(params.num_steps, params.order)
    inputs = dict(
        k=loop.step_indices(params.num_steps),
        t=t,
        alpha=jnp.sqrt(ab),
        sigma=jnp.sqrt(1.0 - ab),
        alpha_prev=jnp.sqrt(ab_prev),
        sigma_prev=loop.safe_sqrt(1.0 - ab_prev),
        w=jnp.asarray(weights),
    )

    def step(state, c):
        x, e1, e2, e3 = state
        eps = loop.model_output(eps_fn, x, c["t"])
        w = c["w"]
        combined = w[0] * eps + w[1] * e1 + w[2] * e2 + w[3] * e3
        x0 = loop.predict_x0(x, combined, c["alpha"], c["sigma"], clip_denoised=clip_denoised)
        x = c["alpha_prev"] * x0 + c["sigma_prev"] * combined
        return (x, eps, e1, e2), eps

    zeros = jnp.zeros_like(x_K)
    (x0, _, _, _), info = loop.run(step, (x_K, zeros, zeros, zeros), inputs, remat=remat, num_timesteps=params.schedule.num_timesteps)
    return (x0, info) if return_info else x0
