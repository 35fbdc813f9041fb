"""Fréchet distance between Gaussian fits of two feature sets (FID when the features are Inception's).

  d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁ Σ₂)^{1/2}

Three routes to the trace term:

* `method="sqrtm"` is pytorch-fid's `calculate_frechet_distance`, step for step: scipy's `sqrtm` of
  Σ₁Σ₂, a retry with eps·I added to both covariances when the root is not finite, the real part
  taken when the imaginary part is small, an error when it is not.
* `method="eigh"` (the default, float64 on the host) uses tr (Σ₁Σ₂)^{1/2} = Σᵢ √λᵢ(A Σ₂ A) with
  A = Σ₁^{1/2}: symmetric eigendecompositions only, so no complex round-off and several times
  faster than `sqrtm` at 2048-d. Negative round-off eigenvalues of PSD matrices are clamped to 0,
  which is what makes a rank-deficient covariance (fewer samples than dimensions) well defined here.
* `jax_distance_of_features` (float32 under `jit`, differentiable: search fitness and the DDSS
  loss): with A = Σ_ref^{1/2} computed once in float64 (`Reference`) and Y = X_c A / √(N−1) the
  whitened, centred features, tr (A Σ A)^{1/2} = tr (YᵀY)^{1/2} is the nuclear norm of Y: the sum of
  its singular values. An SVD gets small singular values to absolute round-off ε‖Y‖, where an
  eigendecomposition of YᵀY (or of the N×N Gram YYᵀ) gets their squares to ε‖Y‖², i.e. their roots
  only to √ε‖Y‖: with Inception-like, fast-decaying spectra that is the difference between 1e-5 and
  tens of percent relative error in float32 (benchmarks/fid_time.py).
* `jax_distance(mu, sigma, ref)`: the same from float32 statistics. Σ = B Bᵀ with B = V Λ^{1/2}
  from `eigh(Σ)` (any rank), then tr (A Σ A)^{1/2} = ‖A B‖_* by SVD. (Taking √ of the eigenvalues
  of A Σ A in float32 instead lost up to 80% in the benchmark's regime; this route keeps ~1e-4 at
  full rank. A rank-deficient Σ (N ≤ D samples) still leaves ~1e-3: use the features route there.)
"""
from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

from ddss import parallel
from ddss.metrics import stats


def warn_if_rank_deficient(num_samples: int, dim: int) -> None:
    if num_samples <= dim:
        warnings.warn(
            f"FID from {num_samples} samples of {dim}-d features: the covariance has rank ≤ {num_samples - 1} < {dim}, "
            f"so the value is biased upward and not comparable with FIDs from more samples. Use > {dim} samples "
            "(FID on Inception features is conventionally reported on 10k or 50k).", stacklevel=3)


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) of features [N, D] in float64 (Σ unbiased, as numpy.cov and pytorch-fid).

    Refuses anything but a finite real [N, D] array with N ≥ 2 (images are not flattened into
    "features": they go through a feature extractor first)."""
    f = stats.as_features(features, "FID statistics: features", min_samples=2,
                          reason="a covariance needs")
    acc = stats.RunningStats().update(f)
    warn_if_rank_deficient(acc.count, acc.mean.shape[0])
    return acc.mu, acc.sigma


def _as_stats(mu1, sigma1, mu2, sigma2):
    """Both (μ, Σ) as float64, checked (`stats.check_covariance`: shapes μ [D], Σ [D, D], finite,
    Σ symmetric PSD) and of the same dimension D."""
    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)  # a scalar μ is a 1-d Gaussian (Σ [1, 1])
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    mu1, sigma1 = stats.check_covariance(mu1, sigma1, "FID: the first statistics (mu1, sigma1)")
    mu2, sigma2 = stats.check_covariance(mu2, sigma2, "FID: the second statistics (mu2, sigma2)")
    if mu1.shape != mu2.shape:
        raise ValueError(f"FID: statistics differ in shape: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}: "
                         f"{mu1.shape[0]}-d vs {mu2.shape[0]}-d features come from different feature spaces. "
                         "Compute both with the same feature extractor.")
    return mu1, sigma1, mu2, sigma2


def psd_sqrt(sigma) -> np.ndarray:
    """Symmetric square root of a covariance (float64; negative round-off eigenvalues clamped to 0)."""
    sigma = np.asarray(sigma, np.float64)
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.maximum(w, 0.0))) @ v.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """tr (Σ₁Σ₂)^{1/2} by symmetric eigendecompositions (float64)."""
    a = psd_sqrt(sigma1)
    m = a @ sigma2 @ a
    return float(np.sqrt(np.maximum(np.linalg.eigvalsh((m + m.T) / 2), 0.0)).sum())


def _sqrtm_trace(sigma1, sigma2, eps: float) -> float:
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"FID: product of covariances is singular; adding {eps} to the diagonals.")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in the matrix square root.")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, *, method: str = "eigh") -> float:
    """Fréchet distance of two Gaussians, float64 on the host. `method`: "eigh" (default) or "sqrtm" (pytorch-fid).

    Both μ must be [D] and both Σ [D, D] of the same D, finite, symmetric and positive semi-definite
    (within the round-off tolerances of `stats.check_covariance`): anything else raises ValueError."""
    if method not in ("eigh", "sqrtm"):
        raise ValueError(f"Unknown FID method {method!r}; choose 'eigh' or 'sqrtm'.")
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"FID: eps must be a finite number >= 0, got {eps!r}.")
    mu1, sigma1, mu2, sigma2 = _as_stats(mu1, sigma1, mu2, sigma2)
    diff = mu1 - mu2
    if method == "sqrtm":
        tr_covmean = _sqrtm_trace(sigma1, sigma2, eps)
    elif method == "eigh":
        tr_covmean = trace_sqrt_product(sigma1, sigma2)
    else:
        raise ValueError(f"Unknown FID method {method!r}; choose 'eigh' or 'sqrtm'.")
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def frechet_distance_of(features, mu_ref, sigma_ref, *, method: str = "eigh") -> float:
    """Fréchet distance of a feature set [N, D] (N ≥ 2, finite; never images) to reference statistics
    (μ [D], Σ [D, D] of the same D)."""
    f = stats.as_features(features, "frechet_distance_of: features", min_samples=2, reason="a covariance needs")
    d_ref = np.shape(np.atleast_1d(mu_ref))
    if len(d_ref) == 1 and d_ref[0] != f.shape[1]:
        raise ValueError(f"frechet_distance_of: the features are {f.shape[1]}-d but the reference statistics are "
                         f"{d_ref[0]}-d: they come from different feature spaces. Use the reference statistics "
                         "of the feature extractor that made these features.")
    return frechet_distance(*statistics(f), mu_ref, sigma_ref, method=method)


# ---------------------------------------------------------------------------------------------
# float32, jittable: search fitness
# ---------------------------------------------------------------------------------------------

@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Reference:
    """Reference statistics prepared once for the jitted FID: μ, Σ^{1/2} and tr Σ (float32 device arrays)."""
    mu: jax.Array
    sqrt_sigma: jax.Array
    trace_sigma: jax.Array

    @classmethod
    def from_stats(cls, mu, sigma) -> "Reference":
        """From reference (μ [D], Σ [D, D]), checked as `frechet_distance` checks them."""
        mu, sigma = stats.check_covariance(np.atleast_1d(mu), np.atleast_2d(sigma), "FID reference statistics")
        return cls(jnp.asarray(mu, jnp.float32), jnp.asarray(psd_sqrt(sigma), jnp.float32),
                   jnp.asarray(np.trace(sigma), jnp.float32))


def _ref_dim(ref) -> int:
    if not all(hasattr(ref, a) for a in ("mu", "sqrt_sigma", "trace_sigma")) or np.ndim(ref.mu) != 1:
        raise TypeError(f"The reference must be a fid.Reference (fid.Reference.from_stats(mu, sigma)), got "
                        f"{type(ref).__name__}.")
    return int(np.shape(ref.mu)[0])


def jax_distance(mu, sigma, ref: Reference) -> jax.Array:
    """Fréchet distance of (μ, Σ) to `ref` in float32 (jittable): the nuclear norm of Σ_ref^{1/2} Σ^{1/2}.

    Shapes (μ [D], Σ [D, D], D of `ref`) are checked always; values (finite, Σ symmetric PSD) only
    outside jit, on concrete arrays."""
    d = _ref_dim(ref)
    if np.ndim(mu) != 1 or np.shape(sigma) != (np.shape(mu)[0],) * 2 or np.shape(mu)[0] != d:
        raise ValueError(f"jax_distance: needs mu [D] and sigma [D, D] with the reference's D = {d}, got mu "
                         f"{np.shape(mu)} and sigma {np.shape(sigma)}. Compute them from features of the "
                         "reference's feature extractor.")
    if not isinstance(mu, jax.core.Tracer) and not isinstance(sigma, jax.core.Tracer):
        stats.check_covariance(np.asarray(mu), np.asarray(sigma), "jax_distance: (mu, sigma)")
    mu, sigma = jnp.asarray(mu, jnp.float32), jnp.asarray(sigma, jnp.float32)
    diff = mu - ref.mu
    lam, vecs = jnp.linalg.eigh((sigma + sigma.T) / 2)
    root = vecs * jnp.sqrt(jnp.maximum(lam, 0.0))
    tr_covmean = jnp.linalg.svd(ref.sqrt_sigma @ root, compute_uv=False).sum()
    return diff @ diff + jnp.trace(sigma) + ref.trace_sigma - 2 * tr_covmean


@parallel.precise_fn
def jax_distance_of_features(features, ref: Reference) -> jax.Array:
    """Fréchet distance of a feature batch [N, D] to `ref` in float32 (jittable, differentiable).

    The trace term is the nuclear norm of the whitened, centred features Y = X_c Σ_ref^{1/2} / √(N−1)
    (sum of singular values: see the module docstring), for any N ≥ 2 (N ≤ D included).
    Shapes are checked (static, also under jit): features must be [N, D] with the reference's D, never
    images (those go through the feature extractor first).
    """
    d = _ref_dim(ref)
    shape = np.shape(features)
    if len(shape) != 2:
        raise ValueError(f"jax_distance_of_features: features must be [N, D], got shape {shape}. Images must go "
                         "through the feature extractor first (extractor(images) -> [N, D]).")
    if shape[1] != d:
        raise ValueError(f"jax_distance_of_features: the features are {shape[1]}-d but the reference is {d}-d: "
                         "they come from different feature spaces.")
    if shape[0] < 2:
        raise ValueError(f"jax_distance_of_features: a covariance needs at least 2 samples, got {shape[0]}.")
    f = jnp.asarray(features).astype(jnp.float32)
    n = f.shape[0]
    mu = f.mean(axis=0)
    xc = f - mu
    diff = mu - ref.mu
    y = (xc @ ref.sqrt_sigma) / jnp.sqrt(jnp.float32(n - 1))
    tr_covmean = jnp.linalg.svd(y, compute_uv=False).sum()
    trace_sigma = (xc * xc).sum() / (n - 1)
    return diff @ diff + trace_sigma + ref.trace_sigma - 2 * tr_covmean
