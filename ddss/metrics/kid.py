"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with k(a, b) = (aᵀb/d + 1)³.

`kid` reports it as torch-fidelity and the paper do: the mean and standard deviation over random
subsets (default 100 subsets of 1000), float64 on the host. `mmd2` is the same estimator in JAX for
one pair of batches: jittable and differentiable, the DDSS training loss.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def _check(x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"KID needs feature matrices [m, d] and [n, d], got {x.shape} and {y.shape}.")
    if len(x) < 2 or len(y) < 2:
        raise ValueError("KID needs at least 2 samples in each set.")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("KID: features contain NaN or inf; the samples that produced them are invalid.")


def _mmd2(x, y, xp):
    """The unbiased estimator with k(a, b) = (aᵀb/d + 1)³, in numpy or jax.numpy (`xp`)."""
    d = x.shape[-1]
    kernel = lambda a, b: (a @ b.T / d + 1) ** 3
    offdiag_mean = lambda k: (k.sum() - xp.trace(k)) / (k.shape[0] * (k.shape[0] - 1))
    return offdiag_mean(kernel(x, x)) + offdiag_mean(kernel(y, y)) - 2 * kernel(x, y).mean()


def unbiased_mmd2(x, y) -> float:
    """Unbiased MMD² between feature sets x [m, d] and y [n, d] (float64, host)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    _check(x, y)
    return float(_mmd2(x, y, np))


def kid(x, y, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
    """Mean and std of unbiased MMD² over random subsets: torch-fidelity's defaults (100 × 1000, seed 2020)
    and its subset draws (`RandomState(seed).choice` without replacement, x then y), so equal inputs give
    torch-fidelity's numbers. Subsets shrink to the smaller set's size when a set has fewer than `subset_size`."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    _check(x, y)
    size = min(subset_size, len(x), len(y))
    rng = np.random.RandomState(seed)
    values = [
        float(_mmd2(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)], np))
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def mmd2(x, y):
    """Unbiased MMD² of two feature batches in JAX: jittable, differentiable in x and y."""
    return _mmd2(x, y, jnp)
