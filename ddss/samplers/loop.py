"""The shared K-step sampling loop and the checks every sampler family runs.

A family computes its per-step coefficients as arrays over k = K..1 (vectorised, outside the loop)
and hands `run` a step function `step(state, inputs) -> (state, eps)`; `run` scans it, optionally
rematerialising each step, and records the first step whose model output was not finite. Nothing
here syncs with the host: `raise_if_nonfinite` reads that record after sampling, on the host.

Step numbering: the step that moves x_k (at time τ_k) to x_{k-1} is step k, so the loop runs
k = K, K-1, ..., 1 and the noise of step k is `step_noise(key, k, x)` (a `fold_in` of the key,
so any step's noise can be reproduced on its own, e.g. by a reference implementation in a test).
"""
from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]


@flax.struct.dataclass
class SampleInfo:
    """Diagnostics of one sampling run (device values; read them after sampling, not inside)."""

    nonfinite_step: jax.Array  # int32: first step k (K..1) with a non-finite model output, 0 if none
    nonfinite_t: jax.Array  # the time τ_k of that step (NaN if none)
    # bool: the times were finite, within [0, T−1] and strictly decreasing. Concrete times are checked
    # before sampling (a ValueError); this flag is how traced times (under jit or vmap) report.
    timesteps_ok: jax.Array


def is_concrete(x) -> bool:
    """True when `x` holds values (not a tracer), so value checks are possible."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_x(x) -> None:
    """Shape and dtype checks on the initial state x_K (static: they work under jit too)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"x_K must be an array of shape [batch, ...], got {type(x).__name__}.")
    if x.ndim < 2:
        raise ValueError(
            f"x_K must have a batch axis and at least one data axis ([B, H, W, C] for images, [B, D] for "
            f"vectors); got shape {tuple(x.shape)}. Add the batch axis with x[None]."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"x_K must be a floating-point array (images are float32 in [-1, 1] inside ddss); got dtype "
            f"{x.dtype}. Convert with x.astype(jnp.float32) (and rescale uint8 images to [-1, 1])."
        )


def check_timesteps(timesteps, num_timesteps: int) -> None:
    """Value checks on a sampler's times [τ_K, ..., τ_1]; skipped when the times are traced."""
    shape = np.shape(timesteps)
    if len(shape) != 1:
        raise ValueError(f"timesteps must be a 1-D list [τ_K, ..., τ_1], got shape {shape}.")
    k = shape[0]
    if k < 1:
        raise ValueError("K must be at least 1: the timestep list is empty.")
    if k > num_timesteps:
        raise ValueError(
            f"K = {k} timesteps is more than the model's T = {num_timesteps} training steps; use K ≤ {num_timesteps}."
        )
    if not is_concrete(timesteps):
        return
    t = np.asarray(timesteps, dtype=np.float64)
    if not np.all(np.isfinite(t)):
        raise ValueError(f"timesteps contain NaN or inf: {t.tolist()}.")
    if np.any(t < 0) or np.any(t > num_timesteps - 1):
        raise ValueError(
            f"timesteps must lie in [0, T-1] = [0, {num_timesteps - 1}]; got min {t.min():g}, max {t.max():g}."
        )
    if np.any(np.diff(t) >= 0):
        bad = int(np.argmax(np.diff(t) >= 0))
        raise ValueError(
            "timesteps must be strictly decreasing (noisiest first, [τ_K > ... > τ_1]); "
            f"entry {bad} ({t[bad]:g}) is followed by {t[bad + 1]:g}. Reverse or deduplicate the list."
        )


def timesteps_ok(timesteps, num_timesteps: int) -> jax.Array:
    """In-graph (no host sync): True when the times are finite, in [0, T−1] and strictly decreasing."""
    t = jnp.asarray(timesteps)
    return (jnp.all(jnp.isfinite(t)) & jnp.all(t >= 0) & jnp.all(t <= num_timesteps - 1)
            & jnp.all(t[1:] < t[:-1]))


def check_sample_inputs(params, x) -> None:
    """The checks every family's `sample` runs on its params (timesteps, schedule) and x_K."""
    check_x(x)
    check_timesteps(params.timesteps, params.schedule.num_timesteps)


def as_timesteps(timesteps, num_timesteps: int):
    """Checks a timestep list and stores concrete ones as float64 numpy (traced ones pass through)."""
    check_timesteps(timesteps, num_timesteps)
    return np.asarray(timesteps, dtype=np.float64) if is_concrete(timesteps) else timesteps


def model_output(eps_fn: EpsFn, x: jax.Array, t: jax.Array, *, channels: int | None = None) -> jax.Array:
    """eps_fn(x, t) with the scalar time t broadcast to the batch, its shape checked (x's shape, or
    x's with `channels` channels for a model that returns more than its prediction)."""
    eps = eps_fn(x, jnp.full(x.shape[:1], t, dtype=x.dtype))
    want = x.shape if channels is None else x.shape[:-1] + (channels,)
    if getattr(eps, "shape", None) != want:
        what = "a prediction of the same shape as x" if channels is None else \
            f"shape {want}: the prediction and the learned variance, {channels // 2} channels each"
        raise ValueError(
            f"The model function returned shape {getattr(eps, 'shape', None)} for an input of shape {x.shape}; "
            f"it must return {what}."
        )
    return eps


def step_noise(key: jax.Array, k, x: jax.Array) -> jax.Array:
    """The standard normal noise of step k, shaped like x."""
    return jax.random.normal(jax.random.fold_in(key, k), x.shape, x.dtype)


def step_indices(num_steps: int) -> jax.Array:
    """[K, K-1, ..., 1] as int32: the step numbers in loop order."""
    return jnp.arange(num_steps, 0, -1, dtype=jnp.int32)


def run(
    step: Callable[[Any, dict], tuple[Any, jax.Array]],
    state: Any,
    inputs: dict,
    *,
    remat: bool = False,
    num_timesteps: int | None = None,
) -> tuple[Any, SampleInfo]:
    """Scans `step` over the per-step `inputs` (a dict of [K, ...] arrays with keys 'k' and 't', the
    times τ_K, ..., τ_1 in loop order; with `num_timesteps` T they are checked in-graph, see SampleInfo).

    remat=True wraps each step in `jax.checkpoint`, so differentiating through the chain keeps
    one state per step instead of every step's activations.
    """
    body = jax.checkpoint(step) if remat else step
    # Coefficients follow the state's precision (float32 states stay float32 even under x64).
    dtype = jax.tree_util.tree_leaves(state)[0].dtype
    inputs = {
        name: v.astype(dtype) if jnp.issubdtype(jnp.asarray(v).dtype, jnp.floating) else v
        for name, v in inputs.items()
    }

    def scan_step(carry, xs):
        state, bad_k, bad_t = carry
        state, eps = body(state, xs)
        first_bad = (bad_k == 0) & ~jnp.all(jnp.isfinite(eps))
        bad_k = jnp.where(first_bad, xs["k"], bad_k)
        bad_t = jnp.where(first_bad, xs["t"].astype(bad_t.dtype), bad_t)
        return (state, bad_k, bad_t), None

    ok = timesteps_ok(inputs["t"], num_timesteps) if num_timesteps is not None else jnp.ones((), bool)
    init = (state, jnp.zeros((), jnp.int32), jnp.full((), jnp.nan, jnp.float32))
    (state, bad_k, bad_t), _ = jax.lax.scan(scan_step, init, inputs)
    return state, SampleInfo(nonfinite_step=bad_k, nonfinite_t=bad_t, timesteps_ok=ok)


def raise_if_nonfinite(info: SampleInfo) -> None:
    """Host-side, after sampling: one clear error if the model produced NaN/inf, or if traced timesteps
    were invalid (not finite, outside [0, T−1] or not strictly decreasing)."""
    ok = np.asarray(info.timesteps_ok).reshape(-1)  # several entries when sampling was vmapped
    if not ok.all():
        which = "" if ok.size == 1 else f" (in {int((~ok).sum())} of {ok.size} vmapped runs)"
        raise ValueError(
            f"The sampler ran on invalid timesteps{which}: they must be finite, within [0, T-1] and strictly "
            "decreasing (noisiest first). They were traced (under jit or vmap), so they could not be checked "
            "before sampling; the samples are invalid. Check how the times are computed.")
    steps = np.asarray(info.nonfinite_step).reshape(-1)
    worst = int(np.argmax(steps))
    if steps[worst]:
        k, t = int(steps[worst]), float(np.asarray(info.nonfinite_t).reshape(-1)[worst])
        raise FloatingPointError(
            f"The model returned NaN or inf at sampling step k = {k} (model time t = {t:g}). The samples are "
            "invalid. Check the model weights (a corrupt or mismatched checkpoint), the input scaling "
            "(images must be float32 in [-1, 1]) and the timesteps (within [0, T-1])."
        )


def predict_x0(x: jax.Array, eps: jax.Array, alpha_t, sigma_t, *, clip_denoised: bool) -> jax.Array:
    """x̂_0 = (x − σ ε̂) / α, optionally clipped to the data range [-1, 1]."""
    x0 = (x - sigma_t * eps) / alpha_t
    return jnp.clip(x0, -1.0, 1.0) if clip_denoised else x0


def times_and_alpha_bars(schedule, timesteps) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(τ_k, ᾱ(τ_k), ᾱ_{k-1}) in loop order, with ᾱ_0 := 1 for the clean output."""
    t = jnp.asarray(timesteps)
    ab = schedules.alpha_bar(schedule, t)
    ab_prev = jnp.concatenate([ab[1:], jnp.ones((1,), ab.dtype)])
    return t, ab, ab_prev


def scaled_noise(key: jax.Array, k, x: jax.Array, scale) -> jax.Array:
    """scale · step_noise(key, k, x), without drawing the noise when scale is 0 (deterministic steps)."""
    return jax.lax.cond(
        scale != 0,
        lambda: scale * step_noise(key, k, x),
        lambda: jnp.zeros_like(x),
    )


def safe_sqrt(v: jax.Array) -> jax.Array:
    """√max(v, 0) whose gradient is 0 (not inf · 0 = NaN) where v ≤ 0, e.g. at the clean last step."""
    positive = v > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, v, 1.0)), 0.0)
