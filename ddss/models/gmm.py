"""An analytic "pretrained model": the exact ε-prediction of a Gaussian-mixture data distribution.

Data x_0 ~ Σ_c π_c N(m_c, S_c) in any event shape (vectors, or images such as 8×8×1). Under the
VP forward process x_t = α x_0 + σ ε the marginal is again a mixture,

  p_t(x) = Σ_c π_c N(x; α m_c, α² S_c + σ² I),

so the optimal noise prediction is known in closed form from the posterior over components:

  ε*(x, t) = −σ ∇ log p_t(x) = σ Σ_c w_c(x) (α² S_c + σ² I)^{-1} (x − α m_c),
  w_c(x)  ∝ π_c N(x; α m_c, α² S_c + σ² I).

Each S_c is stored by its eigendecomposition U_c diag(d_c) U_cᵀ, so the inverse is cheap at every
t. The mixture's mean and covariance are exact, which makes it a test bed with ground truth:
samplers must reproduce them as K grows, and learned samplers must move towards them.
"""
from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules as sched_lib


@flax.struct.dataclass
class GaussianMixture:
    log_weights: jax.Array  # [C], normalised
    means: jax.Array  # [C, D]
    eigvecs: jax.Array  # [C, D, D], columns are the eigenvectors of S_c
    eigvals: jax.Array  # [C, D], > 0
    event_shape: tuple = flax.struct.field(pytree_node=False)

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)


def from_moments(weights, means, covariances, event_shape=None) -> GaussianMixture:
    """A mixture from component weights [C], means [C, D] and covariances [C, D, D] (float64 eigh)."""
    weights = np.asarray(weights, np.float64)
    means = np.asarray(means, np.float64)
    covariances = np.asarray(covariances, np.float64)
    num, dim = means.shape
    if weights.shape != (num,) or covariances.shape != (num, dim, dim):
        raise ValueError(
            f"Expected weights [C], means [C, D], covariances [C, D, D]; got {weights.shape}, "
            f"{means.shape}, {covariances.shape}."
        )
    if np.any(weights <= 0):
        raise ValueError("Mixture weights must be positive.")
    eigvals, eigvecs = np.linalg.eigh(covariances)
    if np.any(eigvals <= 0):
        raise ValueError("Component covariances must be positive definite.")
    event_shape = tuple(event_shape) if event_shape is not None else (dim,)
    if math.prod(event_shape) != dim:
        raise ValueError(f"event_shape {event_shape} does not hold D = {dim} values.")
    return GaussianMixture(
        log_weights=np.log(weights / weights.sum()),
        means=means,
        eigvecs=eigvecs,
        eigvals=eigvals,
        event_shape=event_shape,
    )


def random_mixture(
    seed: int,
    *,
    event_shape=(8, 8, 1),
    num_components: int = 8,
    mean_scale: float = 0.6,
    std_range=(0.05, 0.3),
) -> GaussianMixture:
    """A reproducible random mixture whose samples mostly lie in [-1, 1] (numpy RNG from `seed`).

    Means are uniform in [-mean_scale, mean_scale]^D, each covariance has a random orthogonal
    basis and standard deviations uniform in `std_range`, weights are Dirichlet(5).
    """
    rng = np.random.default_rng(seed)
    dim = math.prod(event_shape)
    means = rng.uniform(-mean_scale, mean_scale, size=(num_components, dim))
    bases = np.linalg.qr(rng.normal(size=(num_components, dim, dim)))[0]
    stds = rng.uniform(*std_range, size=(num_components, dim))
    covariances = np.einsum("cij,cj,ckj->cik", bases, stds**2, bases)
    weights = rng.dirichlet(np.full(num_components, 5.0))
    return from_moments(weights, means, covariances, event_shape)


def mean(gmm: GaussianMixture) -> np.ndarray:
    """E[x_0], flattened [D] (float64)."""
    w = np.exp(np.asarray(gmm.log_weights, np.float64))
    return w @ np.asarray(gmm.means, np.float64)


def covariance(gmm: GaussianMixture) -> np.ndarray:
    """Cov[x_0] = Σ π_c (S_c + m_c m_cᵀ) − μ μᵀ, flattened [D, D] (float64)."""
    w = np.exp(np.asarray(gmm.log_weights, np.float64))
    m = np.asarray(gmm.means, np.float64)
    u, d = np.asarray(gmm.eigvecs, np.float64), np.asarray(gmm.eigvals, np.float64)
    second = np.einsum("c,cij,cj,ckj->ik", w, u, d, u) + np.einsum("c,ci,ck->ik", w, m, m)
    mu = w @ m
    return second - np.outer(mu, mu)


def sample(gmm: GaussianMixture, key: jax.Array, num: int) -> jax.Array:
    """num exact samples x_0, shaped [num, *event_shape]."""
    key_c, key_z = jax.random.split(key)
    comp = jax.random.categorical(key_c, jnp.asarray(gmm.log_weights), shape=(num,))
    z = jax.random.normal(key_z, (num, gmm.dim))
    u, d, m = (jnp.asarray(a)[comp] for a in (gmm.eigvecs, gmm.eigvals, gmm.means))
    x = m + jnp.einsum("nij,nj->ni", u, jnp.sqrt(d) * z)
    return x.reshape((num,) + gmm.event_shape)


def _component_terms(gmm: GaussianMixture, x_flat, a, s):
    """Per component: log π_c N(x; a m_c, a² S_c + s² I) and (a² S_c + s² I)^{-1}(x − a m_c)."""
    u = jnp.asarray(gmm.eigvecs, x_flat.dtype)
    d = jnp.asarray(gmm.eigvals, x_flat.dtype)
    m = jnp.asarray(gmm.means, x_flat.dtype)
    y = x_flat[:, None, :] - a[:, None, None] * m[None]  # [B, C, D]
    z = jnp.einsum("bcd,cde->bce", y, u)  # coordinates in each eigenbasis
    var = a[:, None, None] ** 2 * d[None] + s[:, None, None] ** 2  # [B, C, D]
    log_norm = -0.5 * jnp.sum(z**2 / var + jnp.log(var) + jnp.log(2 * jnp.pi), axis=-1)
    log_joint = jnp.asarray(gmm.log_weights, x_flat.dtype)[None] + log_norm  # [B, C]
    precision_y = jnp.einsum("cde,bce->bcd", u, z / var)  # [B, C, D]
    return log_joint, precision_y


def noisy_log_prob(gmm: GaussianMixture, x: jax.Array, alpha_t, sigma_t) -> jax.Array:
    """log p_t(x) for x = α x_0 + σ ε; alpha_t, sigma_t of shape [B]. α = 1, σ → 0 gives log p_0."""
    x_flat = x.reshape(x.shape[0], -1)
    log_joint, _ = _component_terms(gmm, x_flat, jnp.asarray(alpha_t), jnp.asarray(sigma_t))
    return jax.nn.logsumexp(log_joint, axis=-1)


def log_prob(gmm: GaussianMixture, x: jax.Array) -> jax.Array:
    """log p_0(x) of clean data, shape [B]."""
    ones = jnp.ones(x.shape[:1], x.dtype)
    return noisy_log_prob(gmm, x, ones, jnp.zeros_like(ones))


def optimal_eps(gmm: GaussianMixture, x: jax.Array, alpha_t, sigma_t) -> jax.Array:
    """ε*(x) = σ Σ_c w_c (α² S_c + σ² I)^{-1} (x − α m_c), for per-example α, σ of shape [B]."""
    x_flat = x.reshape(x.shape[0], -1)
    a, s = jnp.asarray(alpha_t, x.dtype), jnp.asarray(sigma_t, x.dtype)
    log_joint, precision_y = _component_terms(gmm, x_flat, a, s)
    w = jax.nn.softmax(log_joint, axis=-1)
    eps = s[:, None] * jnp.einsum("bc,bcd->bd", w, precision_y)
    return eps.reshape(x.shape)


def eps_fn(gmm: GaussianMixture, schedule: sched_lib.Schedule):
    """The model function `eps_fn(x, t)` of this mixture under `schedule` (t: model time, [B])."""

    def fn(x, t):
        if x.shape[1:] != gmm.event_shape:
            raise ValueError(f"The mixture's data shape is {gmm.event_shape}; got x of shape {x.shape}.")
        return optimal_eps(gmm, x, sched_lib.alpha(schedule, t), sched_lib.sigma(schedule, t))

    return fn
