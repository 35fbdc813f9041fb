"""Guidance as model-function wrappers: any sampler that takes `eps_fn(x, t)` samples guided.

Class labels `y` [B] (int) are an argument of the wrapper, not a constant: pass them into your jitted
function beside the noise, and new labels reuse the compiled program.

  eps = guidance.classifier_guided(model_eps, logits, schedule, scale=1.0)   # (x, t, y) -> ε̃
  x0 = ddim.sample(params, lambda x, t: eps(x, t, y), x_K, key)

- `classifier_guided`: Dhariwal & Nichol's `condition_score` route, ε̃ = ε − s·√(1−ᾱ_t)·∇ₓ log p(y | x_t),
  with the noisy classifier's logits at the same time t. It suits every sampler (DDIM, DPM-Solver++,
  UniPC, GGDM).
- `classifier_gradient`: s·∇ₓ log p(y | x_t), the `cond_fn` of the ancestral sampler's
  `condition_mean` route (`ddpm.sample(..., cond_fn=...)`: the mean moves by its variance times it).
- `classifier_free`: ε(x, ∅) + w·(ε(x, y) − ε(x, ∅)) (Ho & Salimans) for a model trained with a null
  class: `eps_fn(x, t, y)` with `null_class` as ∅. w = 1 is the conditional model.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ddss import schedules


def classifier_gradient(logits_fn: Callable, scale: float) -> Callable:
    """(x, t, y) -> scale · ∇ₓ log softmax(logits_fn(x, t))[y], per example (the batch sums nothing
    across examples: each image's gradient is its own)."""

    def log_prob(x, t, y):
        logp = jax.nn.log_softmax(logits_fn(x, t).astype(jnp.float32), axis=-1)
        return jnp.take_along_axis(logp, y[:, None].astype(jnp.int32), axis=-1).sum()

    grad = jax.grad(log_prob)
    return lambda x, t, y: scale * grad(x, t, y)


def classifier_guided(eps_fn: Callable, logits_fn: Callable, schedule: schedules.Schedule, scale: float) -> Callable:
    """(x, t, y) -> ε(x, t, y) − √(1−ᾱ_t) · scale · ∇ₓ log p(y | x_t). `eps_fn(x, t, y)` is the
    model's (class-conditional or not: an unconditional model ignores y), `logits_fn(x, t)` the noisy
    classifier's."""
    gradient = classifier_gradient(logits_fn, scale)

    def guided(x, t, y):
        sigma = schedules.sigma(schedule, t).astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        return eps_fn(x, t, y) - sigma * gradient(x, t, y)

    return guided


def classifier_free(eps_fn: Callable, scale: float, null_class: int) -> Callable:
    """(x, t, y) -> ε(x, t, ∅) + scale · (ε(x, t, y) − ε(x, t, ∅)), both halves in one batched call."""

    def guided(x, t, y):
        both = eps_fn(jnp.concatenate([x, x]), jnp.concatenate([t, t]),
                      jnp.concatenate([y, jnp.full_like(y, null_class)]))
        cond, uncond = jnp.split(both, 2)
        return uncond + scale * (cond - uncond)

    return guided
