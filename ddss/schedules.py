"""Variance-preserving noise schedules on a discrete model time t = 0..T-1.

A DDPM-style model is trained on integer steps with ᾱ_t = Π_{s≤t} (1 − β_s). Samplers may ask for
any real t in [0, T-1]: ᾱ(t) is defined between integers by linear interpolation of log ᾱ (the
rule of DPM-Solver's discrete VP schedule), so ᾱ(t) is continuous, strictly decreasing and
differentiable almost everywhere in t. Clean data has ᾱ = 1; that value is never in the table
(ᾱ_0 = 1 − β_0 < 1) and samplers use it only for their output.

Notation, all functions of model time t:
  α(t) = √ᾱ(t),  σ(t) = √(1 − ᾱ(t)),  λ(t) = log(α/σ) (half the log signal-to-noise ratio).
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "Schedule",
    "linear_beta",
    "cosine",
    "from_alphas_cumprod",
    "from_betas",
    "log_alpha_bar",
    "alpha_bar",
    "alpha",
    "sigma",
    "logsnr",
    "t_from_logsnr",
    "timesteps",
    "STRIDES",
]


@flax.struct.dataclass
class Schedule:
    """A discrete VP schedule: the table log ᾱ_t for t = 0..T-1 (a pytree, so jit/vmap see it)."""

    log_alpha_bar_table: jax.Array  # [T], strictly decreasing, < 0

    @property
    def num_timesteps(self) -> int:
        """T, the number of training steps (static: read from the table's shape)."""
        return self.log_alpha_bar_table.shape[0]


def from_alphas_cumprod(alphas_cumprod) -> Schedule:
    """Wraps a given table ᾱ_0 > ᾱ_1 > ... > ᾱ_{T-1} > 0 (e.g. a checkpoint's `alphas_cumprod`)."""
    table = np.asarray(alphas_cumprod, dtype=np.float64)
    if table.ndim != 1 or table.shape[0] < 2:
        raise ValueError(f"alphas_cumprod must be a 1-D table with at least 2 entries, got shape {table.shape}.")
    if not np.all(np.isfinite(table)) or np.any(table <= 0) or np.any(table >= 1):
        raise ValueError("alphas_cumprod must lie strictly inside (0, 1); clean data (ᾱ = 1) is not a table entry.")
    if np.any(np.diff(table) >= 0):
        raise ValueError("alphas_cumprod must be strictly decreasing in t (more noise at larger t).")
    return Schedule(log_alpha_bar_table=np.log(table))


def from_betas(betas) -> Schedule:
    """ᾱ_t = Π_{s≤t} (1 − β_s), computed in float64."""
    betas = np.asarray(betas, dtype=np.float64)
    if np.any(betas <= 0) or np.any(betas >= 1):
        raise ValueError("betas must lie strictly inside (0, 1).")
    return from_alphas_cumprod(np.cumprod(1.0 - betas))


def linear_beta(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Schedule:
    """DDPM's linear-β schedule (Ho et al. 2020): β_t linear from 1e-4 to 0.02 over T = 1000."""
    return from_betas(np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64))


def cosine(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Schedule:
    """Cosine schedule (Nichol & Dhariwal 2021), β clipped at `max_beta` as in their code."""
    f = lambda u: np.cos((u + s) / (1 + s) * np.pi / 2) ** 2
    u = np.arange(num_timesteps + 1, dtype=np.float64) / num_timesteps
    betas = np.minimum(1 - f(u[1:]) / f(u[:-1]), max_beta)
    return from_betas(betas)


def log_alpha_bar(schedule: Schedule, t) -> jax.Array:
    """log ᾱ(t), linear interpolation of the table; t is clamped to [0, T-1]."""
    table = jnp.asarray(schedule.log_alpha_bar_table)
    grid = jnp.arange(table.shape[0], dtype=table.dtype)
    t = jnp.asarray(t, dtype=table.dtype)
    return jnp.interp(t, grid, table)


def alpha_bar(schedule: Schedule, t) -> jax.Array:
    return jnp.exp(log_alpha_bar(schedule, t))


def alpha(schedule: Schedule, t) -> jax.Array:
    """α(t) = √ᾱ(t), the signal scale."""
    return jnp.exp(0.5 * log_alpha_bar(schedule, t))


def sigma(schedule: Schedule, t) -> jax.Array:
    """σ(t) = √(1 − ᾱ(t)), the noise scale (via expm1, accurate near t = 0)."""
    return jnp.sqrt(-jnp.expm1(log_alpha_bar(schedule, t)))


def logsnr(schedule: Schedule, t) -> jax.Array:
    """λ(t) = log α(t) − log σ(t); strictly decreasing in t."""
    la = log_alpha_bar(schedule, t)
    return 0.5 * la - 0.5 * jnp.log(-jnp.expm1(la))


def t_from_logsnr(schedule: Schedule, lam) -> jax.Array:
    """Inverse of `logsnr`: the model time with λ(t) = lam (clamped to the table's range)."""
    table = jnp.asarray(schedule.log_alpha_bar_table)
    # ᾱ = sigmoid(2λ), so log ᾱ = log_sigmoid(2λ); invert the piecewise-linear log ᾱ(t).
    la = jax.nn.log_sigmoid(2.0 * jnp.asarray(lam, dtype=table.dtype))
    grid = jnp.arange(table.shape[0], dtype=table.dtype)
    return jnp.interp(la, table[::-1], grid[::-1])


# --------------------------------------------------------------------------- timestep strides
#
# Every stride places the K network evaluations at τ_i = g(i / K), i = 1..K, with g increasing,
# g(0) = 0 and g(1) = T - 1, and returns them noisiest first: [τ_K, ..., τ_1]. The sampler then
# steps from τ_1 to clean data (ᾱ = 1). The rules:
#   linear     τ_i = ⌊(T-1) · i/K⌋                      (DDIM paper's linear stride, c = (T-1)/K)
#   quadratic  τ_i = ⌊(T-1) · (i/K)²⌋                   (DDIM paper's quadratic stride, c = (T-1)/K²)
#   logsnr     λ(τ_i) = λ(0) + (i/K)(λ(T-1) − λ(0))      (uniform in λ, DPM-Solver's choice; real τ)
#   edm        s(τ_i) = (s_min^{1/ρ} + (i−1)/(K−1) (s_max^{1/ρ} − s_min^{1/ρ}))^ρ, ρ = 7, rounded to
#              integers (Karras et al. 2022's grid in s = σ/α = e^{−λ}, from s_min = s(0) to
#              s_max = s(T-1); unlike the others it includes t = 0: τ_1 = 0, τ_K = T-1; K = 1 gives T-1)
# Integer strides that would repeat a value when K is close to T are pushed apart to stay strictly
# increasing by at least one step (so every K ≤ T gives K distinct times).

EDM_RHO = 7.0


def _t_from_logsnr_np(table: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """`t_from_logsnr` in float64 numpy (host-side, without float32 rounding)."""
    log_ab = -np.logaddexp(0.0, -2.0 * lam)  # log ᾱ = log sigmoid(2λ)
    return np.interp(log_ab, table[::-1], np.arange(table.shape[0], dtype=np.float64)[::-1])


def _strictly_increasing_integers(tau: np.ndarray, num_timesteps: int) -> np.ndarray:
    tau = tau.astype(np.int64)
    for i in range(1, len(tau)):
        tau[i] = max(tau[i], tau[i - 1] + 1)
    tau[-1] = min(tau[-1], num_timesteps - 1)
    for i in range(len(tau) - 2, -1, -1):
        tau[i] = min(tau[i], tau[i + 1] - 1)
    return tau


def _check_k(num_steps: int, num_timesteps: int) -> None:
    if not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"K (the number of sampling steps) must be an integer ≥ 1, got {num_steps!r}.")
    if num_steps > num_timesteps:
        raise ValueError(
            f"K = {num_steps} is larger than the model's T = {num_timesteps} training steps; "
            f"choose K ≤ {num_timesteps}."
        )


def timesteps(schedule: Schedule, stride: str, num_steps: int) -> np.ndarray:
    """K sampler times [τ_K > ... > τ_1] for a named stride ('linear', 'quadratic', 'logsnr', 'edm').

    Returns float64 numpy (integer-valued for 'linear', 'quadratic' and 'edm'); host-side, not traced.
    """
    T = schedule.num_timesteps
    _check_k(num_steps, T)
    if stride not in STRIDES:
        raise ValueError(f"Unknown stride {stride!r}; choose one of {sorted(STRIDES)}.")
    u = np.arange(1, num_steps + 1, dtype=np.float64) / num_steps
    # In float64 numpy: the same rules as `logsnr` / `t_from_logsnr`, without float32 rounding.
    table = np.asarray(schedule.log_alpha_bar_table, dtype=np.float64)
    lam = 0.5 * table - 0.5 * np.log(-np.expm1(table))
    if stride == "logsnr":
        tau = _t_from_logsnr_np(table, lam[0] + u * (lam[-1] - lam[0]))
        tau[-1] = T - 1.0  # exact end point, whatever the interpolation rounding
        if np.any(np.diff(tau) <= 0):
            raise ValueError(f"K = {num_steps} is too large for a strictly increasing λ-uniform grid.")
    elif stride == "edm":
        # s = σ/α = e^{−λ}; the grid is uniform in s^{1/ρ}, increasing from s(0) to s(T-1) (K = 1: s(T-1)).
        v = np.arange(num_steps, dtype=np.float64) / (num_steps - 1) if num_steps > 1 else np.ones(1)
        root_min, root_max = np.exp(-lam[0] / EDM_RHO), np.exp(-lam[-1] / EDM_RHO)
        s_grid = (root_min + v * (root_max - root_min)) ** EDM_RHO
        tau = np.round(_t_from_logsnr_np(table, -np.log(s_grid)))
        tau[-1] = T - 1.0  # exact end points, whatever the interpolation rounding
        if num_steps > 1:
            tau[0] = 0.0
        tau = _strictly_increasing_integers(tau, T).astype(np.float64)
    else:
        power = 1 if stride == "linear" else 2
        tau = _strictly_increasing_integers(np.floor((T - 1) * u**power), T).astype(np.float64)
    return tau[::-1].copy()


STRIDES = ("linear", "quadratic", "logsnr", "edm")
