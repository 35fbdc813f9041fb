"""Feature statistics: streaming (μ, Σ) over batches, and the `.npz` files pytorch-fid reads.

`RunningStats` merges batch moments with Chan et al.'s pairwise update in float64 on the host, so a
dataset of any size streams through in batches of any size (the last, short batch included) and
gives the same μ and unbiased Σ as `numpy.cov` on all features at once, without the round-off of a
raw sum of squares. Files hold `mu` [D] and `sigma` [D, D] (pytorch-fid's `--save-stats` format),
plus `num_samples` and a JSON `info` string.

It also holds the input checks the metrics share, so that each bad input gets one clear error
(naming the problem and the fix) rather than a silently wrong number:

* `as_features(x, what)`: features must be a real-valued [N, D] array (not images: those go through a
  feature extractor first), with enough rows, all finite.
* `check_covariance(mu, sigma, what)`: μ [D], Σ [D, D], finite, Σ symmetric and positive
  semi-definite within the round-off tolerances `SYMMETRY_RTOL` and `PSD_RTOL` (see there).
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from ddss import parallel


class StatsFileError(FileNotFoundError):
    """A reference-statistics file is missing, unreadable, or not what the experiment expects."""


# Σ computed from finite features is symmetric and PSD up to round-off; these tolerances are generous
# for statistics computed (or stored) in float32, and far tighter than any real error.
#
# Symmetry: |Σᵢⱼ − Σⱼᵢ| ≤ SYMMETRY_RTOL · max|Σ| (max|Σ| is the largest variance, which bounds every
# entry). numpy/pytorch-fid (float64) and jnp.cov (float32) give exactly symmetric matrices (measured:
# 0); a GEMM that sums entry (i, j) and (j, i) in different orders differs by about √N·ε, ≈ 1.3e-5
# for N = 50k samples in float32 (ε₃₂ = 6e-8), and ≈ 5e-14 in float64. A matrix that is not a
# covariance at all (a Cholesky factor, a random matrix) is asymmetric at the scale of its entries.
SYMMETRY_RTOL = 1e-4
# PSD: λ_min ≥ −PSD_RTOL · λ_max. Rank-deficient covariances (N ≤ D) have exactly-zero eigenvalues that
# round-off turns into ±δ·λ_max: measured −1.7e-16 (float64 np.cov) and −2.4e-8 (float32 jnp.cov) for
# 200 samples of 1024-d Inception-like features; rounding a 2048-d Σ to float32 moves eigenvalues by
# at most ‖E‖_F ≤ ε₃₂·√D·‖Σ‖ ≈ 2.7e-6·λ_max. 1e-4 is ≥ 30× those bounds, while a symmetric matrix
# that is not a covariance (a difference of covariances, a sign error) has λ_min ≈ −0.1…−1 · λ_max.
PSD_RTOL = 1e-4

_FEATURE_HINT = ("Images must go through a feature extractor first, e.g. "
                 "ddss.metrics.features.get(name).features(images) -> [N, D].")


def _real_dtype(x, what: str) -> np.ndarray:
    """`x` as a numpy array of a real numeric dtype (ints or floats), else one TypeError."""
    try:
        a = np.asarray(x)
    except Exception as e:  # ragged lists and the like
        raise TypeError(f"{what} must be a numeric array, got {type(x).__name__} ({e}).") from e
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
                                   or a.dtype.name == "bfloat16"):
        kind = "complex" if np.issubdtype(a.dtype, np.complexfloating) else str(a.dtype)
        raise TypeError(f"{what} must be a real-valued float array, got dtype {kind}. "
                        "Pass the float features (or statistics) themselves, e.g. x.astype(np.float64); "
                        "complex values would lose their imaginary part and booleans count as 0/1.")
    return a


def as_features(features, what: str = "Features", *, min_samples: int = 1, reason: str = "") -> np.ndarray:
    """`features` as float64 [N, D], checked: a real dtype, ndim 2 (images [N, H, W, C] are refused with
    a pointer to the feature extractors), at least `min_samples` rows (`reason` says why), all finite."""
    a = _real_dtype(features, what)
    if a.ndim != 2:
        looks = (" They look like images [N, H, W, C] (or [N, C, H, W])." if a.ndim in (3, 4) else
                 " A single feature vector needs a leading axis: x[None]." if a.ndim == 1 else "")
        raise ValueError(f"{what} must be a 2-D array of features [N, D], got shape {a.shape}.{looks} "
                         f"{_FEATURE_HINT}")
    if len(a) < min_samples:
        raise ValueError(f"{what}: {reason or 'need'} at least {min_samples} samples, got {len(a)}. "
                         "Bring more samples.")
    if a.shape[1] == 0:
        raise ValueError(f"{what} have 0 feature dimensions (shape {a.shape}); pass the extractor's features.")
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        bad = int(np.count_nonzero(~np.all(np.isfinite(a), axis=1)))
        raise ValueError(f"{what} contain NaN or inf ({bad} of {len(a)} rows); the samples that produced them "
                         "are invalid: find the diverging sampler run, do not score it.")
    return a


def check_covariance(mu, sigma, what: str = "statistics") -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) as float64, checked: real dtypes, μ [D], Σ [D, D], finite, Σ symmetric and positive
    semi-definite within `SYMMETRY_RTOL` and `PSD_RTOL`. Raises one TypeError/ValueError naming `what`."""
    mu = _real_dtype(mu, f"{what}: mu").astype(np.float64)
    sigma = _real_dtype(sigma, f"{what}: sigma").astype(np.float64)
    if mu.ndim != 1:
        raise ValueError(f"{what}: mu must be a mean vector [D], got shape {mu.shape}."
                         + (" This looks like a feature matrix: compute (mu, sigma) with "
                            "ddss.metrics.fid.statistics(features)." if mu.ndim == 2 else ""))
    d = mu.shape[0]
    if d == 0:
        raise ValueError(f"{what}: mu is empty (0 dimensions).")
    if sigma.shape != (d, d):
        raise ValueError(f"{what}: sigma must be a covariance [D, D] = [{d}, {d}] to match mu [{d}], got shape "
                         f"{sigma.shape}. Pass (mu, sigma) of the same feature set, e.g. from "
                         "ddss.metrics.fid.statistics(features).")
    for name, a in (("mu", mu), ("sigma", sigma)):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{what}: {name} contains NaN or inf; recompute the statistics from finite features.")
    scale = float(np.abs(sigma).max())
    asym = float(np.abs(sigma - sigma.T).max())
    if asym > SYMMETRY_RTOL * scale:
        raise ValueError(f"{what}: sigma is not symmetric (max |Σ − Σᵀ| = {asym:.3g}, {asym / scale:.2g} of max |Σ|; "
                         f"tolerance {SYMMETRY_RTOL:g}), so it is not a covariance. Pass the covariance matrix "
                         "itself (np.cov(features, rowvar=False)), not a Cholesky factor or another "
                         "non-symmetric matrix.")
    if np.any(np.diagonal(sigma) < -PSD_RTOL * scale):
        i = int(np.argmin(np.diagonal(sigma)))
        raise ValueError(f"{what}: sigma is not positive semi-definite: variance Σ[{i},{i}] = {sigma[i, i]:.3g} < 0. "
                         "Pass the covariance matrix of the features (np.cov(features, rowvar=False)).")
    w = np.linalg.eigvalsh((sigma + sigma.T) / 2)
    if w[0] < -PSD_RTOL * max(w[-1], 0.0) or (w[-1] <= 0 and w[0] < 0):
        raise ValueError(f"{what}: sigma is not positive semi-definite: smallest eigenvalue {w[0]:.3g} vs largest "
                         f"{w[-1]:.3g} (tolerance −{PSD_RTOL:g}·largest), so it is not a covariance. Pass the "
                         "covariance matrix of the features (np.cov(features, rowvar=False)), not a difference "
                         "of covariances or a matrix edited by hand.")
    return mu, sigma


@dataclasses.dataclass(frozen=True)
class RunningStats:
    """Immutable accumulator: `stats = stats.update(batch)`; `stats.mu`, `stats.sigma` at any point."""
    count: int = 0
    mean: np.ndarray | None = None
    scatter: np.ndarray | None = None  # Σ (x − mean)(x − mean)ᵀ

    def update(self, features) -> "RunningStats":
        """Merge a batch of features [n, D] (n = 0 is a no-op); images are refused, not flattened."""
        f = as_features(features, "RunningStats.update: features", min_samples=0)
        if self.mean is not None and f.shape[1] != self.mean.shape[0]:
            raise ValueError(f"Feature dimension changed from {self.mean.shape[0]} to {f.shape[1]}: every batch "
                             "must come from the same feature extractor.")
        n_b = len(f)
        if n_b == 0:
            return self
        mean_b = f.mean(axis=0)
        centered = f - mean_b
        scatter_b = centered.T @ centered
        if self.count == 0:
            return RunningStats(n_b, mean_b, scatter_b)
        n = self.count + n_b
        delta = mean_b - self.mean
        mean = self.mean + delta * (n_b / n)
        scatter = self.scatter + scatter_b + np.outer(delta, delta) * (self.count * n_b / n)
        return RunningStats(n, mean, scatter)

    @property
    def mu(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("No features yet: a mean needs at least 1 sample; update() with features first.")
        return self.mean

    @property
    def sigma(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError(f"Need at least 2 samples for a covariance, got {self.count}. Bring more samples "
                             "(FID on Inception features is conventionally computed on 10k or 50k).")
        return self.scatter / (self.count - 1)


def save(path: str, mu, sigma, *, num_samples: int, info: dict | None = None) -> None:
    """Write (mu [D], sigma [D, D]) checked as `check_covariance` does, so a bad file is never written."""
    mu, sigma = check_covariance(mu, sigma, f"stats.save({path!r})")
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 0:
        raise ValueError(f"stats.save: num_samples must be a non-negative integer, got {num_samples!r}.")
    if not parallel.is_main_process():  # a multi-host run writes once
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64),
             num_samples=np.int64(num_samples), info=np.array(json.dumps(info or {})))


def load(path: str, *, dim: int | None = None, hint: str = "") -> tuple[np.ndarray, np.ndarray, dict]:
    """(mu, sigma, info) from an .npz with `mu` and `sigma` (ours or pytorch-fid's), checked."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise StatsFileError(f"Reference statistics not found: {path}. {hint}".strip())
    try:
        with np.load(path, allow_pickle=False) as f:
            if "mu" not in f.files or "sigma" not in f.files:
                raise StatsFileError(f"{path} has arrays {f.files}, not 'mu' and 'sigma'. {hint}".strip())
            mu, sigma = np.asarray(f["mu"], np.float64), np.asarray(f["sigma"], np.float64)
            info = json.loads(str(f["info"])) if "info" in f.files else {}
            if "num_samples" in f.files:
                info["num_samples"] = int(f["num_samples"])
    except (OSError, ValueError) as e:
        if isinstance(e, StatsFileError):
            raise
        raise StatsFileError(f"{path} is not a readable .npz of statistics ({e}). {hint}".strip()) from e
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise StatsFileError(f"{path}: mu {mu.shape} and sigma {sigma.shape} do not fit together.")
    if dim is not None and mu.shape[0] != dim:
        raise StatsFileError(f"{path} holds {mu.shape[0]}-d statistics but the feature extractor gives {dim}-d "
                             f"features: they come from a different feature space. {hint}".strip())
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise StatsFileError(f"{path} contains NaN or inf; recompute it. {hint}".strip())
    try:
        check_covariance(mu, sigma, path)
    except ValueError as e:  # not symmetric or not PSD: the file holds no covariance
        raise StatsFileError(f"{e} Recompute the file. {hint}".strip()) from e
    return mu, sigma, info
