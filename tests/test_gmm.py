"""The analytic test bed against independent computations (scipy / jax.scipy densities)."""
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from ddss import schedules
from ddss.models import gmm


def _marginal_log_density(mixture, x_flat, a, s):
    """log p_t(x) from full covariances with jax.scipy: no eigendecomposition, no shared code."""
    w = np.exp(np.asarray(mixture.log_weights))
    u, d = np.asarray(mixture.eigvecs), np.asarray(mixture.eigvals)
    covs = np.einsum("cij,cj,ckj->cik", u, d, u)
    terms = [
        jnp.log(w[c]) + jax.scipy.stats.multivariate_normal.logpdf(
            x_flat, a * mixture.means[c], a**2 * covs[c] + s**2 * jnp.eye(x_flat.shape[-1])
        )
        for c in range(len(w))
    ]
    return jax.nn.logsumexp(jnp.stack(terms), axis=0)


def test_eps_is_minus_sigma_times_score():
    mixture = gmm.random_mixture(1, event_shape=(3, 3, 1), num_components=4)
    schedule = schedules.linear_beta()
    eps_fn = gmm.eps_fn(mixture, schedule)
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (5, 3, 3, 1), jnp.float64)
        for t in [0.0, 37.5, 400.0, 999.0]:
            a, s = float(schedules.alpha(schedule, t)), float(schedules.sigma(schedule, t))
            score = jax.vmap(jax.grad(lambda xi: _marginal_log_density(mixture, xi, a, s)))(x.reshape(5, -1))
            eps = eps_fn(x, jnp.full((5,), t))
            np.testing.assert_allclose(np.asarray(eps).reshape(5, -1), -s * np.asarray(score), rtol=1e-8, atol=1e-10)


def test_log_prob_matches_scipy():
    mixture = gmm.random_mixture(2, event_shape=(5,), num_components=3)
    x = np.random.default_rng(0).normal(size=(7, 5)) * 0.5
    w = np.exp(np.asarray(mixture.log_weights))
    covs = np.einsum("cij,cj,ckj->cik", mixture.eigvecs, mixture.eigvals, mixture.eigvecs)
    ref = np.log(sum(w[c] * stats.multivariate_normal(mixture.means[c], covs[c]).pdf(x) for c in range(3)))
    with jax.enable_x64(True):
        np.testing.assert_allclose(gmm.log_prob(mixture, jnp.asarray(x)), ref, rtol=1e-9)


def test_exact_moments_match_samples():
    mixture = gmm.random_mixture(3, event_shape=(4,), num_components=5)
    x = np.asarray(gmm.sample(mixture, jax.random.key(0), 200_000), np.float64)
    mean, cov = gmm.mean(mixture), gmm.covariance(mixture)
    se = np.sqrt(np.diag(cov) / len(x))
    assert np.all(np.abs(x.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(x, rowvar=False), cov, atol=0.01 * np.abs(cov).max())


def test_from_moments_validation():
    import pytest

    with pytest.raises(ValueError, match="positive definite"):
        gmm.from_moments([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, -1.0]]])
    with pytest.raises(ValueError, match="does not hold"):
        gmm.from_moments([1.0], [[0.0, 0.0]], [np.eye(2)], event_shape=(3,))
