import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from conftest import require
from ddss import schedules


def test_linear_beta_matches_diffusers_table():
    diffusers = require("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod.numpy()
    ours = np.exp(schedules.linear_beta().log_alpha_bar_table)
    np.testing.assert_allclose(ours, ref, rtol=2e-6)


def test_cosine_matches_diffusers_table():
    diffusers = require("diffusers")
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").alphas_cumprod.numpy()
    ours = np.exp(schedules.cosine().log_alpha_bar_table)
    np.testing.assert_allclose(ours, ref, rtol=2e-5)


def test_linear_beta_against_closed_form():
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.cumprod(1 - betas)
    np.testing.assert_allclose(np.exp(schedules.linear_beta().log_alpha_bar_table), ab, rtol=1e-12)


def test_interpolation_is_exact_on_integers_and_linear_in_log_between():
    s = schedules.linear_beta()
    table = np.asarray(s.log_alpha_bar_table)
    with jax.enable_x64(True):
        t = jnp.array([0.0, 1.0, 250.0, 999.0, 10.25, 500.5])
        la = np.asarray(schedules.log_alpha_bar(s, t))
    np.testing.assert_allclose(la[:4], table[[0, 1, 250, 999]], rtol=1e-12)
    np.testing.assert_allclose(la[4], 0.75 * table[10] + 0.25 * table[11], rtol=1e-12)
    np.testing.assert_allclose(la[5], 0.5 * table[500] + 0.5 * table[501], rtol=1e-12)


def test_alpha_sigma_logsnr_identities():
    s = schedules.cosine()
    with jax.enable_x64(True):
        t = jnp.linspace(0.0, 999.0, 37)
        a, sg, lam = schedules.alpha(s, t), schedules.sigma(s, t), schedules.logsnr(s, t)
        np.testing.assert_allclose(a**2 + sg**2, 1.0, rtol=1e-12)
        np.testing.assert_allclose(lam, np.log(a / sg), rtol=1e-10)
        assert np.all(np.diff(lam) < 0)
        np.testing.assert_allclose(schedules.t_from_logsnr(s, lam), t, atol=1e-7)


@pytest.mark.parametrize("stride", schedules.STRIDES)
@pytest.mark.parametrize("K", [1, 2, 5, 10, 100, 999, 1000])
def test_strides_are_strictly_decreasing_in_range(stride, K):
    s = schedules.linear_beta()
    tau = schedules.timesteps(s, stride, K)
    assert tau.shape == (K,)
    assert tau[0] == 999
    assert np.all(np.diff(tau) < 0) and tau[-1] >= 0


def test_stride_formulas():
    s = schedules.linear_beta()
    np.testing.assert_array_equal(schedules.timesteps(s, "linear", 10), np.arange(10, 0, -1) * 999 // 10)
    np.testing.assert_array_equal(schedules.timesteps(s, "quadratic", 5), [999, 639, 359, 159, 39])
    lam = np.asarray(schedules.logsnr(s, jnp.asarray(schedules.timesteps(s, "logsnr", 8))), np.float64)
    lam_grid = np.concatenate([lam, [float(schedules.logsnr(s, 0.0))]])
    np.testing.assert_allclose(np.diff(lam_grid), np.diff(lam_grid).mean(), rtol=1e-3)


def _edm_reference(schedule, num_steps, rho=7.0):
    """Karras et al.'s grid, written independently: s = σ/α from the table, each s_i mapped back to
    model time by root-finding on the forward interpolation log ᾱ(t) = −log(1 + s²), rounded."""
    table = np.asarray(schedule.log_alpha_bar_table, np.float64)
    ab = np.exp(table)
    s_min, s_max = np.sqrt((1 - ab[0]) / ab[0]), np.sqrt((1 - ab[-1]) / ab[-1])
    if num_steps == 1:
        s_grid = np.array([s_max])
    else:
        i = np.arange(num_steps)
        s_grid = (s_max ** (1 / rho) + i / (num_steps - 1) * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    grid = np.arange(len(table), dtype=np.float64)
    tau = []
    for s in s_grid:
        target = -np.log1p(s**2)
        f = lambda t: np.interp(t, grid, table) - target
        tau.append(0.0 if f(0.0) <= 0 else len(table) - 1.0 if f(len(table) - 1.0) >= 0 else
                   optimize.brentq(f, 0.0, len(table) - 1.0, xtol=1e-12))
    return np.asarray(tau)


@pytest.mark.parametrize("make", [schedules.linear_beta, schedules.cosine], ids=["linear_beta", "cosine"])
def test_edm_stride_against_an_independent_computation(make):
    s = make()
    for K in (2, 3, 5, 10, 20, 50):
        ours = schedules.timesteps(s, "edm", K)
        ref = _edm_reference(s, K)
        rounded = np.round(ref)
        if make is schedules.linear_beta:
            assert np.all(np.diff(rounded) < 0)
            np.testing.assert_array_equal(ours, rounded)
        else:
            # The cosine schedule's last β is clipped, so s_max is huge and the first grid points all
            # round into t = 995..999; the stride pushes the repeats apart, one step each, downwards.
            expected = rounded.copy()
            for i in range(1, K):
                expected[i] = min(expected[i], expected[i - 1] - 1)
            np.testing.assert_array_equal(ours, expected)
    # The grid is uniform in s^{1/ρ}: check it on the real-valued reference times through our schedule.
    with jax.enable_x64(True):
        lam = np.asarray(schedules.logsnr(s, jnp.asarray(_edm_reference(s, 12))))
    np.testing.assert_allclose(np.diff(np.exp(-lam / 7.0)), np.diff(np.exp(-lam / 7.0)).mean(), rtol=1e-6)


@pytest.mark.parametrize("make", [schedules.linear_beta, schedules.cosine], ids=["linear_beta", "cosine"])
def test_edm_stride_is_strictly_decreasing_integers_in_range(make):
    s = make()
    for K in range(1, 51):
        tau = schedules.timesteps(s, "edm", K)
        assert tau.shape == (K,) and tau[0] == 999 and (K == 1 or tau[-1] == 0), (K, tau)
        assert np.all(np.diff(tau) < 0) and np.all(tau == np.round(tau)), (K, tau)


@pytest.mark.parametrize("bad,match", [(0, "K"), (1001, "larger than the model's T")])
def test_stride_rejects_bad_k(bad, match):
    with pytest.raises(ValueError, match=match):
        schedules.timesteps(schedules.linear_beta(), "linear", bad)


def test_unknown_stride():
    with pytest.raises(ValueError, match="Unknown stride"):
        schedules.timesteps(schedules.linear_beta(), "cubic", 5)


def test_table_validation():
    with pytest.raises(ValueError, match="strictly decreasing"):
        schedules.from_alphas_cumprod([0.9, 0.95, 0.5])
    with pytest.raises(ValueError, match="inside"):
        schedules.from_alphas_cumprod([1.0, 0.5])
