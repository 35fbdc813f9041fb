"""Sampler behaviour: compile once, vmap, gradients, remat, bad input, convergence on the GMM."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import linalg

from ddss import schedules
from ddss.diagnostics import count_compilations
from ddss.models import gmm
from ddss.samplers import SOLVERS, ddim, ddpm, dpm_solver, raise_if_nonfinite

SCHEDULE = schedules.linear_beta()
MIXTURE = gmm.random_mixture(7, event_shape=(4,), num_components=6)
EPS_FN = gmm.eps_fn(MIXTURE, SCHEDULE)
CASES = [("ddim", {"eta": 0.0}), ("ddim", {"eta": 0.7}), ("ddpm", {}), ("ddpm", {"variance": "large"}),
         ("dpm_solver++", {"order": 2}), ("dpm_solver++", {"order": 3})]
IDS = [f"{name}-{kw}" for name, kw in CASES]


def _random_timesteps(rng, k):
    return np.sort(rng.choice(1000, k, replace=False))[::-1].astype(np.float64)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_one_compilation_for_100_timestep_lists(name, kwargs):
    mod = SOLVERS[name]

    def sampler_under_test(params, x, key):
        return mod.sample(params, EPS_FN, x, key)

    fn = jax.jit(sampler_under_test)
    rng = np.random.default_rng(0)
    x, key = jnp.zeros((4, 4)), jax.random.key(0)
    with count_compilations() as counter:
        for _ in range(100):
            fn(mod.init(SCHEDULE, _random_timesteps(rng, 10), **kwargs), x, key).block_until_ready()
    assert counter.count("sampler_under_test") == 1


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_vmap_over_timesteps_matches_separate_calls(name, kwargs):
    mod = SOLVERS[name]
    rng = np.random.default_rng(1)
    ts = np.stack([_random_timesteps(rng, 6) for _ in range(3)])
    x = jax.random.normal(jax.random.key(0), (8, 4))
    key = jax.random.key(1)
    params = mod.init(SCHEDULE, ts[0], **kwargs)
    # In float64: in float32 the 3M coefficients of closely spaced random timesteps amplify round-off
    # (vmapped and separate programs fuse differently; 4e-4 relative on some CPUs), which would hide
    # what this test is about.
    with jax.enable_x64(True):
        x = x.astype(jnp.float64)
        batched = jax.jit(jax.vmap(lambda t: mod.sample(params.replace(timesteps=t), EPS_FN, x, key)))(ts)
        for i in range(3):
            single = mod.sample(mod.init(SCHEDULE, ts[i], **kwargs), EPS_FN, x, key)
            assert batched.dtype == single.dtype == jnp.float64
            np.testing.assert_allclose(batched[i], single, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_gradient_in_timesteps_matches_finite_differences(name, kwargs):
    mod = SOLVERS[name]
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (16, 4), jnp.float64)
        key = jax.random.key(1)
        t0 = np.array([900.3, 610.7, 300.2, 120.6, 40.4])
        params = mod.init(SCHEDULE, t0, **kwargs)
        direction = np.array([0.3, -0.2, 0.5, 0.1, -0.4])

        def loss(t):
            return jnp.mean(mod.sample(params.replace(timesteps=t), EPS_FN, x, key) ** 2)

        grad = jax.grad(loss)(jnp.asarray(t0))
        h = 1e-4  # inside one linear piece of the interpolated schedule
        fd = (loss(t0 + h * direction) - loss(t0 - h * direction)) / (2 * h)
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(float(grad @ direction), float(fd), rtol=1e-5)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_remat_changes_nothing_but_memory(name, kwargs):
    mod = SOLVERS[name]
    with jax.enable_x64(True):  # float64, so that re-fused float32 rounding cannot hide a difference
        x = jax.random.normal(jax.random.key(0), (8, 4), jnp.float64)
        key = jax.random.key(1)
        params = mod.init(SCHEDULE, schedules.timesteps(SCHEDULE, "quadratic", 5), **kwargs)

        def loss(p, remat):
            return jnp.sum(mod.sample(p, EPS_FN, x, key, remat=remat) ** 2)

        plain_val, plain_grads = jax.value_and_grad(loss)(params, False)
        remat_val, remat_grads = jax.value_and_grad(loss)(params, True)
    np.testing.assert_allclose(remat_val, plain_val, rtol=1e-12)
    np.testing.assert_allclose(remat_grads.timesteps, plain_grads.timesteps, rtol=1e-10)


def test_ddim_single_step_returns_the_x0_prediction():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (8, 4), jnp.float64)
        t = 500.0
        a, s = schedules.alpha(SCHEDULE, t), schedules.sigma(SCHEDULE, t)
        expected = (x - s * EPS_FN(x, jnp.full((8,), t))) / a
        out = ddim.sample(ddim.init(SCHEDULE, [t]), EPS_FN, x, jax.random.key(0))
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_ddim_eta_one_equals_ddpm_small_variance():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (8, 4), jnp.float64)
        ts = schedules.timesteps(SCHEDULE, "linear", 7)
        key = jax.random.key(3)
        a = ddim.sample(ddim.init(SCHEDULE, ts, eta=1.0), EPS_FN, x, key)
        b = ddpm.sample(ddpm.init(SCHEDULE, ts), EPS_FN, x, key)
    np.testing.assert_allclose(a, b, rtol=1e-10)


def test_stochastic_samplers_depend_on_the_key_and_deterministic_ones_do_not():
    x = jax.random.normal(jax.random.key(0), (8, 4))
    ts = schedules.timesteps(SCHEDULE, "linear", 5)
    for mod, p, stochastic in [(ddpm, ddpm.init(SCHEDULE, ts), True), (ddim, ddim.init(SCHEDULE, ts), False)]:
        a = mod.sample(p, EPS_FN, x, jax.random.key(1))
        b = mod.sample(p, EPS_FN, x, jax.random.key(2))
        assert (not np.allclose(a, b)) == stochastic


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "timesteps,match",
    [
        ([500.0, 700.0, 100.0], "strictly decreasing"),
        ([500.0, 500.0], "strictly decreasing"),
        ([1000.0, 10.0], r"lie in \[0, T-1\]"),
        ([10.0, -1.0], r"lie in \[0, T-1\]"),
        ([], "K must be at least 1"),
        (np.arange(1001, 0, -1.0) - 2, "more than the model's T"),
        ([np.nan, 3.0], "NaN"),
        ([[3.0, 2.0]], "1-D"),
    ],
)
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_bad_timesteps_are_rejected(name, timesteps, match):
    with pytest.raises(ValueError, match=match):
        SOLVERS[name].init(SCHEDULE, np.asarray(timesteps, dtype=np.float64))


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_bad_state_is_rejected(name):
    mod = SOLVERS[name]
    params = mod.init(SCHEDULE, [900.0, 500.0])
    with pytest.raises(ValueError, match="batch axis"):
        mod.sample(params, EPS_FN, jnp.zeros((4,)), jax.random.key(0))
    with pytest.raises(TypeError, match="floating-point"):
        mod.sample(params, EPS_FN, jnp.zeros((2, 4), jnp.uint8), jax.random.key(0))
    with pytest.raises(ValueError, match="same shape"):
        mod.sample(params, lambda x, t: x[:, :2], jnp.zeros((2, 4)), jax.random.key(0))


def test_bad_timesteps_in_params_are_caught_at_sampling_too():
    params = ddim.init(SCHEDULE, [900.0, 500.0]).replace(timesteps=np.array([100.0, 500.0]))
    with pytest.raises(ValueError, match="strictly decreasing"):
        ddim.sample(params, EPS_FN, jnp.zeros((2, 4)), jax.random.key(0))


def test_bad_hyperparameters():
    ts = [900.0, 500.0]
    with pytest.raises(ValueError, match="η must lie in"):
        ddim.init(SCHEDULE, ts, eta=1.5)
    with pytest.raises(ValueError, match="Unknown DDPM variance"):
        ddpm.init(SCHEDULE, ts, variance="learned")
    with pytest.raises(ValueError, match="order must be one of"):
        dpm_solver.init(SCHEDULE, ts, order=4)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_nan_model_output_gives_one_clear_error(name):
    mod = SOLVERS[name]
    params = mod.init(SCHEDULE, [900.0, 500.0, 100.0])

    def broken_eps(x, t):  # fails from t < 600 on: step k = 2 (t = 500)
        return jnp.where(t[:, None] < 600, jnp.nan, EPS_FN(x, t))

    _, info = jax.jit(lambda p, x: mod.sample(p, broken_eps, x, jax.random.key(0), return_info=True))(
        params, jnp.ones((2, 4))
    )
    with pytest.raises(FloatingPointError, match=r"step k = 2 \(model time t = 500\)"):
        raise_if_nonfinite(info)
    _, info = mod.sample(params, EPS_FN, jnp.ones((2, 4)), jax.random.key(0), return_info=True)
    raise_if_nonfinite(info)  # a healthy model passes the check


# ----------------------------------------------------------------------------- convergence

def _frechet_to_truth(samples):
    s = np.asarray(samples, np.float64).reshape(len(samples), -1)
    mu, cov = gmm.mean(MIXTURE), gmm.covariance(MIXTURE)
    m, c = s.mean(0), np.cov(s, rowvar=False)
    return float(((m - mu) ** 2).sum() + np.trace(c + cov - 2 * linalg.sqrtm(c @ cov).real))


@pytest.mark.parametrize(
    "name,stride,kwargs",
    [("ddim", "quadratic", {}), ("ddim", "linear", {}), ("ddpm", "quadratic", {}),
     ("dpm_solver++", "logsnr", {"order": 2}), ("dpm_solver++", "logsnr", {"order": 3})],
)
def test_gmm_error_falls_with_k_and_many_steps_match_the_mixture(name, stride, kwargs):
    mod = SOLVERS[name]
    n = 20_000
    x = jax.random.normal(jax.random.key(0), (n, 4))
    fn = jax.jit(lambda p, x, k: mod.sample(p, EPS_FN, x, k))
    samples = [
        np.asarray(fn(mod.init(SCHEDULE, schedules.timesteps(SCHEDULE, stride, k), **kwargs), x, jax.random.key(1)))
        for k in (5, 10, 20, 40, 1000)
    ]
    errors = [_frechet_to_truth(s) for s in samples]
    assert all(a > b for a, b in zip(errors[:4], errors[1:4])), errors
    assert errors[0] > 10 * errors[3], errors
    # Many steps: as close to the mixture as n exact samples are (Fréchet distance of the moments).
    floor = np.mean([_frechet_to_truth(gmm.sample(MIXTURE, jax.random.key(10 + i), n)) for i in range(5)])
    assert errors[-1] < 4 * floor, (errors, floor)
    se = np.sqrt(np.diag(gmm.covariance(MIXTURE)) / n)
    assert np.all(np.abs(samples[-1].mean(0) - gmm.mean(MIXTURE)) < 5 * se)
