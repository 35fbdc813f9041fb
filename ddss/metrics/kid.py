"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD² with k(a, b) = (aᵀb/d + 1)³."""
from __future__ import annotations

import numpy as np


def unbiased_mmd2(x, y) -> float:
    """Unbiased MMD² between feature sets x [m, d] and y [n, d] (float64, host)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def kid(x, y, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Mean and std of unbiased MMD² over random subsets (torch-fidelity's defaults: 100 × 1000)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    y = np.asarray(y, np.float64).reshape(len(y), -1)
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise ValueError("KID needs at least 2 samples in each set.")
    rng = np.random.default_rng(seed)
    values = [
        unbiased_mmd2(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))
