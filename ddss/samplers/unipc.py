"""UniPC multistep, data-prediction form with B(h) = e^{h} − 1 ("bh2"), orders 2 and 3 (Zhao et al. 2023).

Points are numbered j = 0..K in loop order: x_j at time τ_{K−j} for j < K and the clean output
x_K (σ = 0, λ = ∞). With λ = log(α/σ), h_j = λ_{j+1} − λ_j, m_j = x̂_0 at the j-th evaluation and
r_{j,k} = (λ_{j−k} − λ_j)/h_j, the UniP predictor of order p from x_j is

  x_{j+1} = (σ_{j+1}/σ_j) x_j − α_{j+1}(e^{−h_j} − 1) (m_j + Σ_{k<p} ρ_k (m_{j−k} − m_j)/r_{j,k}),

with ρ = ½ for p = 2 and, for p = 3, ρ solving R ρ = b, R = [[1, 1], [r_1, r_2]], b = (b_1, b_2),
b_n = n! φ_{n+1}(−h)/φ_1(−h) (φ the exponential-integrator functions). After the model is evaluated
at the predicted x_{j+1}, the UniC corrector of the same order p recomputes it from x_j with one more
difference, ρ_p (m_{j+1} − m_j), and ρ solving the p×p Vandermonde system of (r_1, ..., r_{p−1}, 1)
against (b_1, ..., b_p) (ρ = ½ for p = 1). The corrector re-uses the evaluation the next step needs,
so the number of model evaluations stays K; there is no corrector after the last step, which goes
to clean data and returns m_{K−1}, the x̂_0 of the last (corrected) point. The model is evaluated at
the predicted point (the corrected point is not re-evaluated), as in the reference.

Step j uses order min(order, j + 1, K − j): warm-up and diffusers' `lower_order_final` (the last
step is first order, with order 3 the one before it second order, for every K). This is diffusers'
`UniPCMultistepScheduler(predict_x0=True, solver_type="bh2", lower_order_final=True,
final_sigmas_type="zero")`. clip_denoised clips every x̂_0.
"""
from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules as sched_lib
from ddss.samplers import loop

ORDERS = (1, 2, 3)


@flax.struct.dataclass
class UniPCParams:
    schedule: sched_lib.Schedule
    timesteps: jax.Array  # [K] model times τ_K > ... > τ_1
    order: int = flax.struct.field(pytree_node=False, default=2)

    @property
    def num_steps(self) -> int:
        return np.shape(self.timesteps)[0]


def init(schedule: sched_lib.Schedule, timesteps, *, order: int = 2) -> UniPCParams:
    if order not in ORDERS:
        raise ValueError(f"UniPC order must be one of {ORDERS}, got {order!r}.")
    return UniPCParams(
        schedule=schedule,
        timesteps=loop.as_timesteps(timesteps, schedule.num_timesteps),
        order=order,
    )


def step_orders(num_steps: int, order: int) -> np.ndarray:
    """The predictor order of each step, in loop order (static: depends on K and the order only).

    The corrector applied after step j (before step j + 1) has the same order as step j.
    """
    j = np.arange(num_steps)
    return np.minimum(np.minimum(j + 1, num_steps - j), order)


_SERIES_TERMS = 16


def phi_functions(z: jax.Array, n: int) -> list[jax.Array]:
    """[φ_1(z), ..., φ_n(z)] for finite z, φ_k(z) = Σ_{i≥0} z^i/(i+k)! (φ_1(z) = (e^z − 1)/z).

    The recurrence φ_{k+1} = (φ_k − 1/k!)/z (diffusers' computation) has an error of order ε/|z|^k,
    so for |z| < 1 (closely spaced times) the Taylor series is used instead; both branches stay
    finite, so the gradient in z is finite too.
    """
    small = jnp.abs(z) < 1.0
    z_rec = jnp.where(small, -1.0, z)
    z_ser = jnp.where(small, z, 0.0)
    phis, phi = [], jnp.expm1(z_rec) / z_rec
    for k in range(1, n + 1):
        series = jnp.zeros_like(z_ser)
        for i in reversed(range(_SERIES_TERMS)):  # Horner
            series = series * z_ser + 1.0 / math.factorial(i + k)
        phis.append(jnp.where(small, series, phi))
        phi = (phi - 1.0 / math.factorial(k)) / z_rec
    return phis


def step_coefficients(schedule: sched_lib.Schedule, timesteps, order: int) -> dict:
    """Per-step scalars of the predictor and of the corrector that follows it, all finite.

    The updates are written as weights on the history: the predictor of step j is
    x_{j+1} = ratio_j x_j − phi_j (p0 m_j + p1 m_{j−1} + p2 m_{j−2}) and the corrector after it is
    x_{j+1} = ratio_j x_j − phi_j (c0 m_j + c1 m_{j−1} + c2 m_{j−2} + c_new m_{j+1}).
    The last step's h = ∞ is handled exactly: there only the first-order predictor runs.
    """
    t, ab, ab_prev = loop.times_and_alpha_bars(schedule, timesteps)
    num_steps = t.shape[0]
    alpha, sigma = jnp.sqrt(ab), jnp.sqrt(1.0 - ab)
    alpha_prev, sigma_prev = jnp.sqrt(ab_prev), loop.safe_sqrt(1.0 - ab_prev)
    final = jnp.arange(num_steps) == num_steps - 1
    lam = jnp.log(alpha) - jnp.log(sigma)
    lam_next = jnp.log(alpha_prev) - jnp.log(jnp.where(final, 1.0, sigma_prev))
    h = jnp.where(final, 1.0, lam_next - lam)  # placeholder 1 at the last step: only order 1 runs there
    expm1_neg_h = jnp.where(final, -1.0, jnp.expm1(-h))  # e^{−h} − 1, = −1 when λ_{j+1} = ∞
    # r_k = (λ_{j−k} − λ_j)/h_j; where j < k, finite placeholders with r1 ≠ r2 (unused: the order is lower).
    lam_before = jnp.concatenate([lam[:1] - h[:1], lam[:-1]])
    lam_before2 = jnp.concatenate([lam[:1] - 2 * h[:1], lam_before[:-1]])
    r1 = (lam_before - lam) / h
    r2 = (lam_before2 - lam) / h
    r2 = jnp.where(jnp.arange(num_steps) < 2, 2.0 * r1, r2)
    phi1, phi2, phi3, phi4 = phi_functions(-h, 4)
    b1, b2, b3 = phi2 / phi1, 2.0 * phi3 / phi1, 6.0 * phi4 / phi1

    orders = jnp.asarray(step_orders(num_steps, order), jnp.int32)
    zero = jnp.zeros_like(h)

    # Predictor: ρ = ½ (order 2), ρ = R⁻¹(b_1, b_2) with R = [[1, 1], [r1, r2]] (order 3).
    p3_rho1 = (b1 * r2 - b2) / (r2 - r1)
    p3_rho2 = (b2 - b1 * r1) / (r2 - r1)
    p_w1 = jnp.select([orders == 2, orders == 3], [0.5 / r1, p3_rho1 / r1], zero)
    p_w2 = jnp.where(orders == 3, p3_rho2 / r2, zero)
    p_w0 = 1.0 - p_w1 - p_w2

    # Corrector: ρ = ½ (order 1); R = [[1, 1], [r1, 1]] (order 2); R = Vandermonde(r1, r2, 1) (order 3).
    c2_rho1 = (b1 - b2) / (1.0 - r1)
    c2_rho_new = (b2 - b1 * r1) / (1.0 - r1)
    c3_rho1 = (b3 - (r2 + 1.0) * b2 + r2 * b1) / ((r1 - r2) * (r1 - 1.0))
    c3_rho2 = (b3 - (r1 + 1.0) * b2 + r1 * b1) / ((r2 - r1) * (r2 - 1.0))
    c3_rho_new = (b3 - (r1 + r2) * b2 + r1 * r2 * b1) / ((1.0 - r1) * (1.0 - r2))
    c_new = jnp.select([orders == 1, orders == 2], [0.5 + zero, c2_rho_new], c3_rho_new)
    c_w1 = jnp.select([orders == 2, orders == 3], [c2_rho1 / r1, c3_rho1 / r1], zero)
    c_w2 = jnp.where(orders == 3, c3_rho2 / r2, zero)
    c_w0 = 1.0 - c_w1 - c_w2 - c_new

    return dict(
        t=t,
        alpha=alpha,
        sigma=sigma,
        ratio=sigma_prev / sigma,  # σ_{j+1}/σ_j (0 at the last step)
        phi=alpha_prev * expm1_neg_h,
        p0=p_w0,
        p1=p_w1,
        p2=p_w2,
        c0=c_w0,
        c1=c_w1,
        c2=c_w2,
        c_new=c_new,
    )


def sample(
    params: UniPCParams,
    eps_fn: loop.EpsFn,
    x_K: jax.Array,
    key: jax.Array,
    *,
    clip_denoised: bool = False,
    remat: bool = False,
    return_info: bool = False,
):
    """Runs K = len(params.timesteps) predictor(-corrector) steps from x_K; returns x_0 (and a SampleInfo).

    The sampler is deterministic; `key` is accepted so every family shares one signature.
    """
    del key
    loop.check_sample_inputs(params, x_K)
    coef = step_coefficients(params.schedule, params.timesteps, params.order)
    inputs = dict(k=loop.step_indices(params.num_steps), t=coef["t"], alpha=coef["alpha"], sigma=coef["sigma"])
    inputs.update({name: coef[name] for name in ("ratio", "phi", "p0", "p1", "p2")})
    # The corrector applied at step j corrects the previous step's prediction: its coefficients are
    # those of step j − 1 (none at the first step, where `correct` is false).
    inputs.update({f"prev_{name}": jnp.roll(coef[name], 1) for name in ("ratio", "phi", "c0", "c1", "c2", "c_new")})
    inputs["correct"] = jnp.arange(params.num_steps) > 0

    def step(state, c):
        x, x_last, m1, m2, m3 = state  # x: predicted point; x_last: the corrected point before it
        eps = loop.model_output(eps_fn, x, c["t"])
        m0 = loop.predict_x0(x, eps, c["alpha"], c["sigma"], clip_denoised=clip_denoised)
        corrected = c["prev_ratio"] * x_last - c["prev_phi"] * (
            c["prev_c0"] * m1 + c["prev_c1"] * m2 + c["prev_c2"] * m3 + c["prev_c_new"] * m0
        )
        x = jnp.where(c["correct"], corrected, x)
        x_next = c["ratio"] * x - c["phi"] * (c["p0"] * m0 + c["p1"] * m1 + c["p2"] * m2)
        return (x_next, x, m0, m1, m2), eps

    zeros = jnp.zeros_like(x_K)
    (x0, _, _, _, _), info = loop.run(step, (x_K, zeros, zeros, zeros, zeros), inputs, remat=remat, num_timesteps=params.schedule.num_timesteps)
    return (x0, info) if return_info else x0
