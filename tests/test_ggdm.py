"""GGDM family: exact reproduction of its base solvers at init, marginals, the adjoint gradient
(against plain autodiff and finite differences), constraints, no recompiles, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddss import schedules
from ddss.diagnostics import count_compilations
from ddss.models import gmm
from ddss.samplers import ddim, dpm_solver, ggdm

SCHEDULE = schedules.linear_beta()
MIXTURE = gmm.random_mixture(3, event_shape=(6,), num_components=5)
EPS_FN = gmm.eps_fn(MIXTURE, SCHEDULE)
X = jax.random.normal(jax.random.key(0), (64, 6))
KEY = jax.random.key(1)


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@pytest.mark.parametrize("family,eta,stride", [("ggdm", 0.0, "linear"), ("ggdm+pred", 0.6, "quadratic"),
                                               ("vars", 0.6, "linear"), ("vars", 0.0, "quadratic")])
def test_init_reproduces_ddim(family, eta, stride):
    t = schedules.timesteps(SCHEDULE, stride, 5)
    want = ddim.sample(ddim.init(SCHEDULE, t, eta=eta), EPS_FN, X, KEY)
    got = ggdm.sample(ggdm.init(SCHEDULE, t, family=family, eta=eta), EPS_FN, X, KEY)
    assert _rel(got, want) <= 1e-5


@pytest.mark.parametrize("family", ["ggdm+time", "ggdm+pred+time"])
def test_time_families_reproduce_ddim_on_their_initial_times(family):
    t = schedules.timesteps(SCHEDULE, "quadratic", 6)
    params = ggdm.init(SCHEDULE, t, family=family)
    learned_t = np.asarray(params.timesteps)
    np.testing.assert_allclose(learned_t[1:], t[1:], rtol=1e-5)  # only τ_K moves, 0.5 below T - 1
    assert learned_t[0] == pytest.approx(SCHEDULE.num_timesteps - 1.5, abs=1e-3)
    want = ddim.sample(ddim.init(SCHEDULE, learned_t), EPS_FN, X, KEY)
    assert _rel(ggdm.sample(params, EPS_FN, X, KEY), want) <= 1e-5


@pytest.mark.parametrize("family", ["ggdm", "ggdm+pred+time"])
def test_dpm_solver_base_reproduces_dpm_solver_2m(family):
    t = schedules.timesteps(SCHEDULE, "logsnr", 6)
    params = ggdm.init(SCHEDULE, t, family=family, base="dpm_solver++")
    want = dpm_solver.sample(dpm_solver.init(SCHEDULE, np.asarray(params.timesteps), order=2), EPS_FN, X, KEY)
    assert _rel(ggdm.sample(params, EPS_FN, X, KEY), want) <= 1e-5


def test_marginals_follow_the_recursion():
    # A hand-built K = 2 GGDM: x_1 = μ12 x_2 + ν1 x̂0 + σ1 z1,  x_0 = μ01 x_1 + μ02 x_2 + ν0 x̂0.
    mu = jnp.array([[0.0, 0.0, 0.7], [0.0, 0.2, 0.3]])
    nu, sigma = jnp.array([0.5, 0.4]), jnp.array([0.6, 0.0])
    A, sd = ggdm.marginals(mu, nu, sigma, 0.1, 0.9)
    a1 = 0.5 + 0.7 * 0.1
    c1 = np.array([0.6, 0.7 * 0.9])  # coefficients of (z1, z2) in x_1
    a0 = 0.4 + 0.2 * a1 + 0.3 * 0.1
    c0 = np.array([0.2 * 0.6, 0.2 * 0.7 * 0.9 + 0.3 * 0.9])
    np.testing.assert_allclose(A, [a0, a1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(sd, [np.linalg.norm(c0), np.linalg.norm(c1), 0.9], rtol=1e-6)


def _perturbed(params, seed, scale=0.05):
    rng = np.random.default_rng(seed)
    learned = {k: v + scale * rng.standard_normal(np.shape(v)).astype(np.float32) for k, v in params.learned.items()}
    return params.replace(learned=learned)


@pytest.mark.parametrize("family,eta,clip", [("ggdm+pred+time", 0.3, False), ("ggdm+pred", 0.0, True)])
def test_adjoint_gradient_matches_autodiff(family, eta, clip):
    params = _perturbed(ggdm.init(SCHEDULE, schedules.timesteps(SCHEDULE, "quadratic", 4), family=family, eta=eta), 0)
    target = jax.random.normal(jax.random.key(5), X.shape)

    def loss(learned, x, remat):
        out = ggdm.sample(params.replace(learned=learned), EPS_FN, x, KEY, clip_denoised=clip, remat=remat)
        return jnp.mean((out - target) ** 2)

    with jax.enable_x64(True):
        learned = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params.learned)
        x = X.astype(jnp.float64)
        g_adj = jax.grad(loss, argnums=(0, 1))(learned, x, True)
        g_ref = jax.grad(loss, argnums=(0, 1))(learned, x, False)
    for name in learned:
        np.testing.assert_allclose(g_adj[0][name], g_ref[0][name], rtol=1e-9, atol=1e-13, err_msg=name)
    np.testing.assert_allclose(g_adj[1], g_ref[1], rtol=1e-9, atol=1e-13)
    assert any(np.any(np.asarray(g_adj[0][n]) != 0) for n in learned)


def test_adjoint_gradient_matches_finite_differences():
    params = _perturbed(ggdm.init(SCHEDULE, schedules.timesteps(SCHEDULE, "linear", 3), family="ggdm+pred+time",
                                  eta=0.4), 1)
    with jax.enable_x64(True):
        learned = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), params.learned)
        x = X.astype(jnp.float64)
        loss = lambda l: jnp.mean(ggdm.sample(params.replace(learned=l), EPS_FN, x, KEY) ** 2)
        grad = jax.grad(loss)(learned)
        rng = np.random.default_rng(2)
        direction = {k: rng.standard_normal(np.shape(v)) for k, v in learned.items()}
        direction["mu"] = direction["mu"] * ggdm.history_mask(3)
        # Times stay put: a finite difference across a kink of the piecewise-linear log ᾱ(t) is not a
        # derivative. Their gradient is checked against autodiff above.
        direction["time_logits"] = 0.0 * direction["time_logits"]
        shift = lambda s: {k: learned[k] + s * direction[k] for k in learned}
        h = 1e-5
        fd = (loss(shift(h)) - loss(shift(-h))) / (2 * h)
        analytic = sum(float(jnp.sum(grad[k] * direction[k])) for k in learned)
    assert analytic == pytest.approx(float(fd), rel=1e-5)


def test_masked_and_frozen_entries_get_no_gradient():
    params = ggdm.init(SCHEDULE, schedules.timesteps(SCHEDULE, "linear", 5), family="ggdm")
    loss = lambda l: jnp.sum(ggdm.sample(params.replace(learned=l), EPS_FN, X, KEY) ** 2)
    grad = jax.grad(loss)(params.learned)
    assert np.all(np.asarray(grad["mu"])[ggdm.history_mask(5) == 0] == 0)
    assert np.asarray(grad["sigma"])[-1] == 0  # the output step is noise-free
    assert np.all(np.asarray(grad["mu"])[ggdm.history_mask(5) == 1] != 0)


def test_constraints_hold_for_any_parameter_values():
    params = ggdm.init(SCHEDULE, schedules.timesteps(SCHEDULE, "linear", 6), family="ggdm+pred+time")
    for seed in range(5):
        p = _perturbed(params, seed, scale=3.0)
        t = np.asarray(p.timesteps)
        c = ggdm.coefficients(p)
        assert np.all(np.diff(t) < 0) and t[0] <= SCHEDULE.num_timesteps - 1 and t[-1] >= 0
        assert np.all(np.asarray(c["sigma"]) >= 0) and np.all(np.asarray(c["b"]) > 0)
        assert np.all(np.isfinite(np.asarray(c["a"])))  # a follows the marginals: its sign is free


def test_changing_values_does_not_recompile():
    params = ggdm.init(SCHEDULE, schedules.timesteps(SCHEDULE, "linear", 5), family="ggdm+pred+time")

    def ggdm_under_test(learned, x):
        return jax.grad(lambda l: jnp.sum(ggdm.sample(params.replace(learned=l), EPS_FN, x, KEY)))(learned)

    fn = jax.jit(ggdm_under_test)
    with count_compilations() as counter:
        for seed in range(5):
            jax.block_until_ready(fn(_perturbed(params, seed).learned, X))
    assert counter.count("ggdm_under_test") == 1


def test_bad_input_is_rejected():
    t = schedules.timesteps(SCHEDULE, "linear", 4)
    with pytest.raises(ValueError, match="Unknown sampler family"):
        ggdm.init(SCHEDULE, t, family="ggdm+fast")
    with pytest.raises(ValueError, match="larger than the model's T|more than the model's T"):
        ggdm.init(SCHEDULE, np.arange(1001.0)[::-1], family="ggdm")
    params = ggdm.init(SCHEDULE, t, family="ggdm")
    bad = params.replace(learned={**params.learned, "nu": params.learned["nu"] * np.nan})
    with pytest.raises(FloatingPointError, match="NaN"):
        ggdm.sample(bad, EPS_FN, X, KEY)
    with pytest.raises(ValueError, match="learns"):
        ggdm.sample(params.replace(family="ggdm+pred"), EPS_FN, X, KEY)
