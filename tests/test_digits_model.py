"""The shipped digits model and feature network: they load, they are trained, and bad files fail clearly."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddss import schedules
from ddss.data import digits as digits_data
from ddss.models import digits, params_io, pretrained


@pytest.fixture(scope="module")
def model():
    return digits.load()


def test_shipped_model_metadata(model):
    assert model.image_shape == (8, 8, 1)
    assert model.schedule.num_timesteps == 1000
    assert model.num_blocks == len(model.block_macs) == 18
    assert sum(model.block_macs) < model.network_macs
    assert os.path.getsize(digits.UNET_FILE) < 5 * 2**20  # a few MB at most


def test_shipped_model_denoises_held_out_digits(model):
    """L_simple on the 360 test-split digits at five noise levels: a trained network predicts ε far
    better than the trivial ε̂ = 0 (loss 1) at every level."""
    x0, _ = digits_data.load("test")
    key = jax.random.key(0)
    fn = jax.jit(model.eps_fn)
    for t in (10, 100, 300, 600, 900):
        eps = jax.random.normal(jax.random.fold_in(key, t), x0.shape)
        tt = jnp.full((len(x0),), t)
        a = schedules.alpha(model.schedule, tt)[:, None, None, None]
        s = schedules.sigma(model.schedule, tt)[:, None, None, None]
        loss = float(jnp.mean((fn(a * x0 + s * eps, tt) - eps) ** 2))
        assert loss < 0.5, (t, loss)


def test_shipped_classifier_accuracy_on_held_out_split():
    config, params = digits.load_classifier()
    images, labels = digits_data.load("test")
    from ddss.models import classifier

    logits = jax.jit(classifier.logits_fn(config, params))(images)
    assert float(np.mean(np.argmax(np.asarray(logits), -1) == labels)) >= 0.97


def test_features_are_64_dimensional_and_separate_classes():
    images, labels = digits_data.load("test")
    feats = np.asarray(jax.jit(digits.feature_fn())(images))
    assert feats.shape == (360, 64) and np.isfinite(feats).all()
    centroids = np.stack([feats[labels == c].mean(0) for c in range(10)])
    nearest = np.argmin(((feats[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert np.mean(nearest == labels) > 0.9


def test_missing_file(tmp_path):
    with pytest.raises(params_io.WeightFileError, match="not found.*--config=digits_train "):
        digits.load(str(tmp_path / "nope.safetensors"))
    with pytest.raises(params_io.WeightFileError, match="not found.*--config=digits_classifier "):
        digits.load_classifier(str(tmp_path / "nope.safetensors"))


def test_corrupt_file(tmp_path):
    path = tmp_path / "unet.safetensors"
    path.write_bytes(open(digits.UNET_FILE, "rb").read()[:1000])
    with pytest.raises(params_io.WeightFileError, match="corrupt"):
        digits.load(str(path))


def test_nan_parameters_are_refused(tmp_path, model):
    params = jax.tree.map(np.array, model.params)
    params["conv_in"]["kernel"][0, 0, 0, 0] = np.nan
    path = str(tmp_path / "nan.safetensors")
    pretrained.save(path, model.config, params, model.schedule_spec)
    with pytest.raises(params_io.WeightFileError, match="non-finite values.*conv_in/kernel"):
        digits.load(path)


def test_weights_that_do_not_fit_the_config(tmp_path, model):
    params = jax.tree.map(np.array, model.params)
    params["conv_in"]["kernel"] = params["conv_in"]["kernel"][..., :16]
    path = str(tmp_path / "wrong.safetensors")
    pretrained.save(path, model.config, params, model.schedule_spec)
    with pytest.raises(params_io.WeightFileError, match=r"shape mismatch.*conv_in/kernel: file \(3, 3, 1, 16\)"):
        digits.load(path)


def test_a_classifier_file_is_not_a_unet():
    with pytest.raises(params_io.WeightFileError, match="not a ddss UNet weight file"):
        digits.load(digits.CLASSIFIER_FILE)
