"""Turn any denoiser parameterisation into the ε-prediction function `eps_fn(x, t)` samplers use.

With x = α(t) x_0 + σ(t) ε:
  ε from an x_0 prediction:  ε = (x − α x̂_0) / σ
  ε from a v prediction:     v = α ε − σ x_0  ⇒  ε = σ x + α v
Time is model time t ∈ [0, T-1] of shape [B]; α, σ come from the model's schedule.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ddss import schedules as sched_lib

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]
PREDICTIONS = ("eps", "x0", "v")


def _per_example(values: jax.Array, x: jax.Array) -> jax.Array:
    """[B] → [B, 1, ..., 1] so it broadcasts against x."""
    return jnp.reshape(values, values.shape + (1,) * (x.ndim - 1)).astype(x.dtype)


def eps_from_x0(x0_fn: ModelFn, schedule: sched_lib.Schedule) -> ModelFn:
    def eps_fn(x, t):
        a = _per_example(sched_lib.alpha(schedule, t), x)
        s = _per_example(sched_lib.sigma(schedule, t), x)
        return (x - a * x0_fn(x, t)) / s

    return eps_fn


def eps_from_v(v_fn: ModelFn, schedule: sched_lib.Schedule) -> ModelFn:
    def eps_fn(x, t):
        a = _per_example(sched_lib.alpha(schedule, t), x)
        s = _per_example(sched_lib.sigma(schedule, t), x)
        return s * x + a * v_fn(x, t)

    return eps_fn


def as_eps_fn(model_fn: ModelFn, schedule: sched_lib.Schedule, prediction: str) -> ModelFn:
    """Adapter by name: 'eps' (unchanged), 'x0' or 'v'."""
    adapters = {"eps": lambda f, _: f, "x0": eps_from_x0, "v": eps_from_v}
    if prediction not in adapters:
        raise ValueError(f"Unknown prediction type {prediction!r}; choose one of {PREDICTIONS}.")
    return adapters[prediction](model_fn, schedule)
