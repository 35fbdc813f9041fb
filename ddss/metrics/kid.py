"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with k(a, b) = (aᵀb/d + 1)³.

`kid` reports it as torch-fidelity and the paper do: the mean and standard deviation over random
subsets (default 100 subsets of 1000), float64 on the host. `mmd2` is the same estimator in JAX for
one pair of batches: jittable and differentiable, the DDSS training loss.

Inputs are feature matrices [m, d] and [n, d] (never images: those go through a feature extractor
first), finite, with at least 2 rows each. `kid` refuses a `subset_size` larger than either set:
the subsets would then be the whole sets, and the std over subsets would be ~1e-16 instead of a
spread. Pass a smaller `subset_size`, bring more samples, or ask for the shrink explicitly with
`shrink_subsets=True` (subsets of min(subset_size, m, n), with a warning).
"""
from __future__ import annotations

import numbers
import warnings

import jax.numpy as jnp
import numpy as np

from ddss import parallel
from ddss.metrics import stats


def _check(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = stats.as_features(x, "KID: the first feature set (x)", min_samples=2,
                          reason="the unbiased estimator needs")
    y = stats.as_features(y, "KID: the second feature set (y)", min_samples=2,
                          reason="the unbiased estimator needs")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"KID needs feature matrices [m, d] and [n, d] of the same d, got {x.shape} and {y.shape}: "
                         "they come from different feature spaces. Extract both with the same feature extractor.")
    return x, y


def _positive_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"KID: {name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _mmd2(x, y, xp):
    """The unbiased estimator with k(a, b) = (aᵀb/d + 1)³, in numpy or jax.numpy (`xp`)."""
    d = x.shape[-1]
    kernel = lambda a, b: (a @ b.T / d + 1) ** 3
    offdiag_mean = lambda k: (k.sum() - xp.trace(k)) / (k.shape[0] * (k.shape[0] - 1))
    return offdiag_mean(kernel(x, x)) + offdiag_mean(kernel(y, y)) - 2 * kernel(x, y).mean()


def unbiased_mmd2(x, y) -> float:
    """Unbiased MMD² between feature sets x [m, d] and y [n, d] (float64, host; m, n ≥ 2)."""
    x, y = _check(x, y)
    return float(_mmd2(x, y, np))


def kid(x, y, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 2020,
        shrink_subsets: bool = False) -> tuple[float, float]:
    """Mean and std of unbiased MMD² over random subsets: torch-fidelity's defaults (100 × 1000, seed 2020)
    and its subset draws (`RandomState(seed).choice` without replacement, x then y), so equal inputs give
    torch-fidelity's numbers.

    `subset_size` must not exceed either set's size (ValueError naming both sizes). With
    `shrink_subsets=True` it becomes min(subset_size, len(x), len(y)) instead, with a warning. When the
    subsets are then both whole sets, every subset gives the same value: the mean is computed once and
    the std is exactly 0.0 (no subsampling spread exists), with a warning."""
    x, y = _check(x, y)
    num_subsets = _positive_int(num_subsets, "num_subsets", 1)
    subset_size = _positive_int(subset_size, "subset_size", 2)
    size = min(subset_size, len(x), len(y))
    if size < subset_size:
        short = " and ".join(f"{name} has {len(a)}" for name, a in (("x", x), ("y", y)) if len(a) < subset_size)
        if not shrink_subsets:
            raise ValueError(f"KID cannot subsample: subset_size={subset_size} but {short} samples, so every "
                             f"subset would be the whole set and the std over subsets ~0 (not an uncertainty). "
                             f"Lower subset_size (e.g. subset_size={size}) or bring more samples; "
                             "shrink_subsets=True shrinks it for you.")
        warnings.warn(f"KID: subset_size={subset_size} shrunk to {size} ({short} samples, shrink_subsets=True); "
                      "KID values from other subset sizes are not comparable.", stacklevel=2)
    if size == len(x) == len(y):
        if num_subsets > 1:
            warnings.warn(f"KID: subsets of {size} are the whole sets (x and y both have {size} samples), so all "
                          f"{num_subsets} subsets give the same value and the std is 0 by construction, not an "
                          "uncertainty. Bring more samples for a spread.", stacklevel=2)
        return float(_mmd2(x, y, np)), 0.0
    rng = np.random.RandomState(seed)
    values = [
        float(_mmd2(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)], np))
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


@parallel.precise_fn
def mmd2(x, y):
    """Unbiased MMD² of two feature batches in JAX: jittable, differentiable in x and y.

    Shapes are checked (static, also under jit): x [m, d] and y [n, d], m, n ≥ 2, the same d."""
    sx, sy = np.shape(x), np.shape(y)
    if len(sx) != 2 or len(sy) != 2:
        raise ValueError(f"KID (mmd2) needs feature matrices [m, d] and [n, d], got shapes {sx} and {sy}. Images "
                         "must go through the feature extractor first (extractor(images) -> [N, D]).")
    if sx[1] != sy[1]:
        raise ValueError(f"KID (mmd2) needs the same feature dimension d, got {sx} and {sy}: different feature "
                         "spaces.")
    if sx[0] < 2 or sy[0] < 2:
        raise ValueError(f"KID (mmd2): the unbiased estimator needs at least 2 samples in each set, got {sx[0]} "
                         f"and {sy[0]}.")
    return _mmd2(x, y, jnp)
