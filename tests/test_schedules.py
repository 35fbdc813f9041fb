import jax
import jax.numpy as jnp
import numpy as np
import pytest

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
