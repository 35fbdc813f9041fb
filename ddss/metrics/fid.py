"""Fréchet distance between Gaussian fits of two feature sets (FID when the features are Inception's).

  d² = ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁ Σ₂)^{1/2})

computed in float64 on the host with scipy's `sqrtm`, following pytorch-fid's
`calculate_frechet_distance`: if the square root is not finite (near-singular product), retry with
eps·I added to both covariances; a complex result with a small imaginary part is projected on the
reals, a large one is an error.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(μ, Σ) of features [N, D] in float64 (Σ unbiased, as numpy.cov)."""
    f = np.asarray(features, np.float64).reshape(len(features), -1)
    if f.shape[0] < 2:
        raise ValueError(f"Need at least 2 samples for a covariance, got {f.shape[0]}.")
    if not np.all(np.isfinite(f)):
        raise ValueError("Features contain NaN or inf; the samples that produced them are invalid.")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"Statistics differ in shape: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}.")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"FID: product of covariances is singular; adding {eps} to the diagonals.")
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: imaginary component {np.max(np.abs(covmean.imag))} in the matrix square root.")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance_of(features, mu_ref, sigma_ref) -> float:
    """Fréchet distance of a feature set [N, D] to reference statistics."""
    return frechet_distance(*statistics(features), mu_ref, sigma_ref)
