"""Feature statistics: streaming (μ, Σ) over batches, and the `.npz` files pytorch-fid reads.

`RunningStats` merges batch moments with Chan et al.'s pairwise update in float64 on the host, so a
dataset of any size streams through in batches of any size (the last, short batch included) and
gives the same μ and unbiased Σ as `numpy.cov` on all features at once, without the round-off of a
raw sum of squares. Files hold `mu` [D] and `sigma` [D, D] (pytorch-fid's `--save-stats` format),
plus `num_samples` and a JSON `info` string.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np


class StatsFileError(FileNotFoundError):
    """A reference-statistics file is missing, unreadable, or not what the experiment expects."""


@dataclasses.dataclass(frozen=True)
class RunningStats:
    """Immutable accumulator: `stats = stats.update(batch)`; `stats.mu`, `stats.sigma` at any point."""
    count: int = 0
    mean: np.ndarray | None = None
    scatter: np.ndarray | None = None  # Σ (x − mean)(x − mean)ᵀ

    def update(self, features) -> "RunningStats":
        f = np.asarray(features, np.float64).reshape(len(features), -1)
        if not np.all(np.isfinite(f)):
            raise ValueError("Features contain NaN or inf; the samples that produced them are invalid.")
        if self.mean is not None and f.shape[1] != self.mean.shape[0]:
            raise ValueError(f"Feature dimension changed from {self.mean.shape[0]} to {f.shape[1]}.")
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
        return self.mean

    @property
    def sigma(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError(f"Need at least 2 samples for a covariance, got {self.count}.")
        return self.scatter / (self.count - 1)


def save(path: str, mu, sigma, *, num_samples: int, info: dict | None = None) -> None:
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
    return mu, sigma, info
