import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddss import schedules
from ddss.models import adapters, gmm


def _truth(schedule):
    mixture = gmm.random_mixture(0, event_shape=(4, 4, 1), num_components=3)
    x0 = gmm.sample(mixture, jax.random.key(0), 16)
    eps = jax.random.normal(jax.random.key(1), x0.shape)
    t = jnp.linspace(0.0, 999.0, 16)
    a = schedules.alpha(schedule, t)[:, None, None, None]
    s = schedules.sigma(schedule, t)[:, None, None, None]
    return x0, eps, a * x0 + s * eps, t, a, s


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_adapters_recover_eps_from_a_perfect_prediction(prediction):
    schedule = schedules.linear_beta()
    x0, eps, xt, t, a, s = _truth(schedule)
    target = {"x0": x0, "v": a * eps - s * x0}[prediction]
    eps_fn = adapters.as_eps_fn(lambda x, t_: target, schedule, prediction)
    np.testing.assert_allclose(eps_fn(xt, t), eps, atol=2e-4, rtol=1e-4)


def test_eps_adapter_is_identity_and_unknown_name_fails():
    schedule = schedules.linear_beta()
    fn = lambda x, t: 2 * x
    assert adapters.as_eps_fn(fn, schedule, "eps") is fn
    with pytest.raises(ValueError, match="Unknown prediction"):
        adapters.as_eps_fn(fn, schedule, "score")
