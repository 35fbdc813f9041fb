"""The shipped digits evaluation network: it loads, its held-out accuracy is what its file says, it is
independent of the loss network (architecture, seed, split, features), and every feature extractor
has a stable identity (the sha256 of its weight file's bytes)."""
import hashlib

import jax
import numpy as np
import pytest

from conftest import random_inception_params
from ddss.data import digits as digits_data
from ddss.experiments import train_classifier
from ddss.metrics import features
from ddss.models import digits, eval_net, params_io


@pytest.fixture(scope="module")
def shipped():
    return digits.load_eval_network_with_metadata()


@pytest.fixture(scope="module")
def all_digits():
    return digits_data.load("all")


def test_shipped_file_loads_and_is_small(shipped):
    config, params, meta = shipped
    assert meta["kind"] == "digits_eval_features"
    assert config == eval_net.EvalNetConfig()  # the defaults describe the shipped network
    assert set(params) == {"dense_0", "norm_0", "dense_1", "features", "logits"}
    assert params["features"]["kernel"].shape == (256, 64) and params["logits"]["kernel"].shape == (64, 10)
    assert __import__("os").path.getsize(digits.EVAL_FILE) < 2**20


def test_heldout_accuracy_is_what_the_file_says(shipped, all_digits):
    """Rebuild the held-out split from the rule and seed in the metadata, check it is the recorded one,
    and recompute the accuracy on it."""
    config, params, meta = shipped
    training, results = meta["training"], meta["results"]
    images, labels = all_digits
    train_idx, held = train_classifier.stratified_split(labels, training["test_fraction"], training["split_seed"])
    np.testing.assert_array_equal(held, training["heldout_indices"])
    assert len(np.intersect1d(train_idx, held)) == 0 and len(train_idx) + len(held) == digits_data.NUM_EXAMPLES
    logits = np.asarray(jax.jit(eval_net.logits_fn(config, params))(images[held]))
    acc = float(np.mean(np.argmax(logits, -1) == labels[held]))
    assert abs(acc - results["test_accuracy"]) <= 0.5 / len(held)  # identical up to a near-tie flip elsewhere
    assert acc >= 0.97  # measured 0.9805 (352 / 359)
    assert results["n_test"] == len(held) and results["n_train"] == len(train_idx)


def test_split_is_stratified_and_differs_from_the_standard_one(shipped, all_digits):
    _, _, meta = shipped
    _, labels = all_digits
    held = np.asarray(meta["training"]["heldout_indices"])
    for c in range(10):
        assert np.sum(labels[held] == c) == round(0.2 * np.sum(labels == c))
    standard_test = digits_data.split_indices("test")
    overlap = len(np.intersect1d(held, standard_test))
    assert overlap < 0.4 * len(held)  # about a fifth, as for unrelated random splits (61 here)
    assert meta["results"]["standard_test_in_train"] == len(standard_test) - overlap


def test_independent_of_the_loss_network(shipped):
    """Another architecture (dense layers only, against the loss network's convolutions), another
    seed, another split."""
    _, params, meta = shipped
    _, loss_params = digits.load_classifier()
    eval_shapes = {k: v.shape for k, v in params_io.flatten(params).items()}
    loss_shapes = {k: v.shape for k, v in params_io.flatten(loss_params).items()}
    assert all(len(s) <= 2 for s in eval_shapes.values())  # no convolution kernels
    assert any(len(s) == 4 for s in loss_shapes.values())
    assert "norm_0/scale" in eval_shapes and eval_shapes["dense_0/kernel"] == (64, 256)  # the 64 pixels in
    from ddss.configs import digits_classifier

    assert meta["training"]["seed"] != digits_classifier.get_config().seed
    assert meta["training"]["architecture"] == "mlp" and meta["training"]["split"] == "stratified"


def _cv_r2(x, y):
    """R² of y predicted linearly (with intercept) from x, fitted on even rows and scored on odd rows."""
    fit, score = slice(0, None, 2), slice(1, None, 2)
    X = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    coef, *_ = np.linalg.lstsq(X[fit], y[fit], rcond=None)
    resid = y[score] - X[score] @ coef
    return 1.0 - float((resid ** 2).sum() / ((y[score] - y[score].mean(0)) ** 2).sum())


def _within_class(f, labels):
    out = f.copy()
    for c in np.unique(labels):
        out[labels == c] -= f[labels == c].mean(0)
    return out


def test_features_are_not_a_linear_function_of_the_loss_features(all_digits):
    """Both networks classify digits, so both feature spaces separate the classes and their class
    means are largely predictable from each other (overall R² measured 0.86). What matters for sample
    quality beyond the class is the within-class structure: there the loss network's features
    linearly explain only about half of the evaluation features' variance (measured 0.48 and 0.49
    in both directions), so a sampler tuned to the loss network's space is not tuned to this one."""
    images, labels = all_digits
    loss = features.get("digits").features(images)
    ev = features.get("digits_eval").features(images)
    assert ev.shape == (digits_data.NUM_EXAMPLES, 64) and np.isfinite(ev).all()
    assert _cv_r2(loss, ev) < 0.95 and _cv_r2(ev, loss) < 0.95
    assert _cv_r2(_within_class(loss, labels), _within_class(ev, labels)) < 0.7
    assert _cv_r2(_within_class(ev, labels), _within_class(loss, labels)) < 0.7
    # ... while the evaluation features are meaningful: nearest class centroid classifies the digits.
    centroids = np.stack([ev[labels == c].mean(0) for c in range(10)])
    assert np.mean(np.argmin(((ev[:, None] - centroids[None]) ** 2).sum(-1), 1) == labels) > 0.9


def test_extractor_interface(all_digits):
    images, labels = all_digits
    ext = features.get("digits_eval")
    assert ext.name == "digits_eval" and ext.dim == 64 and ext.image_shape == (8, 8, 1)
    assert "digits_eval" in features.EXTRACTORS
    logits = ext.logits_numpy(images[:300])
    assert logits.shape == (300, 10) and np.mean(np.argmax(logits, -1) == labels[:300]) > 0.97
    eager, jitted = np.asarray(ext(images[:5])), ext.features(images[:5])  # two programs: float32 round-off
    np.testing.assert_allclose(eager, jitted, rtol=0, atol=1e-5 * np.abs(jitted).max())  # measured 1.6e-7·max|f|
    grads = jax.grad(lambda x: ext(x).sum())(images[:2])  # differentiable, as the "digits" extractor
    assert grads.shape == (2, 8, 8, 1) and np.isfinite(np.asarray(grads)).all()
    with pytest.raises(ValueError, match="takes 8×8 images"):
        ext.features(np.zeros((2, 16, 16, 1), np.float32))
    import ml_collections

    cfg = ml_collections.ConfigDict(dict(name="digits_eval", weights="", batch_size=100))
    assert features.from_config(cfg).identity() == ext.identity()


def _sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_identity_is_the_sha256_of_the_weight_file(tmp_path):
    ev, loss = features.get("digits_eval"), features.get("digits")
    assert ev.weights_sha256 == _sha256(digits.EVAL_FILE)
    assert ev.identity() == {"name": "digits_eval", "sha256": _sha256(digits.EVAL_FILE)}
    assert loss.identity() == {"name": "digits", "sha256": _sha256(digits.CLASSIFIER_FILE)}
    assert ev.weights_sha256 != loss.weights_sha256
    # A copy has the same identity, from any path; a file that differs in one weight does not.
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(open(digits.EVAL_FILE, "rb").read())
    assert features.get("digits_eval", str(copy)).identity() == ev.identity()
    config, params, meta = digits.load_eval_network_with_metadata()
    params = jax.tree.map(np.array, params)
    params["logits"]["bias"][0] += 1e-3
    changed = tmp_path / "changed.safetensors"
    params_io.save(str(changed), params, {k: v for k, v in meta.items()})
    assert features.get("digits_eval", str(changed)).weights_sha256 == _sha256(changed) != ev.weights_sha256


def test_inception_identity_from_a_file_or_from_params(tmp_path):
    from ddss.metrics import inception

    params = random_inception_params(0)
    a = features.inception_extractor(params=params)
    assert a.identity()["name"] == "inception" and len(a.weights_sha256) == 64
    assert features.inception_extractor(params=jax.tree.map(np.copy, params)).weights_sha256 == a.weights_sha256
    assert features.params_sha256(params) == a.weights_sha256
    params2 = jax.tree.map(np.copy, params)
    leaf = jax.tree_util.tree_leaves(params2)[0]
    leaf.flat[0] += 1.0
    assert features.params_sha256(params2) != a.weights_sha256
    path = str(tmp_path / "inception.safetensors")
    inception.save(path, params)
    from_file = features.inception_extractor(path, output="pool_768")
    assert from_file.identity() == {"name": "inception:pool_768", "sha256": _sha256(path)}


def test_loaders_refuse_each_others_files(tmp_path):
    with pytest.raises(params_io.WeightFileError, match="not a digits evaluation network"):
        digits.load_eval_network(digits.CLASSIFIER_FILE)
    with pytest.raises(params_io.WeightFileError, match="not a digits classifier"):
        digits.load_classifier(digits.EVAL_FILE)
    with pytest.raises(params_io.WeightFileError, match="not found.*--config=digits_eval_features "):
        digits.load_eval_network(str(tmp_path / "nope.safetensors"))
    config, params, meta = digits.load_eval_network_with_metadata()
    params = jax.tree.map(np.array, params)
    params["features"]["kernel"][0, 0] = np.nan
    path = str(tmp_path / "nan.safetensors")
    params_io.save(path, params, meta)
    with pytest.raises(params_io.WeightFileError, match="non-finite values.*features/kernel"):
        digits.load_eval_network(path)


def test_training_run_writes_a_loadable_file(tmp_path):
    """The experiment end to end for 2 epochs (train_classifier.run directly)."""
    from ddss.configs import digits_eval_features

    config = digits_eval_features.get_config()
    config.epochs = 2
    results = train_classifier.run(config, str(tmp_path))
    assert {"test_accuracy", "standard_test_accuracy", "standard_test_in_train", "train_time_s"} <= set(results)
    assert results["split"] == "stratified" and results["seed"] == 1
    path = str(tmp_path / "digits_eval_features.safetensors")
    cfg, _ = digits.load_eval_network(path)
    assert cfg == eval_net.EvalNetConfig()
    assert digits.eval_feature_fn(path)(np.zeros((2, 8, 8, 1), np.float32)).shape == (2, 64)
    assert not (tmp_path / "digits_classifier.safetensors").exists()


def test_train_config_errors():
    from ddss.configs import digits_eval_features

    config = digits_eval_features.get_config()
    config.architecture = "resnet"
    with pytest.raises(ValueError, match="Unknown classifier architecture 'resnet'"):
        train_classifier.ClassifierTrainConfig.from_config(config)
    config = digits_eval_features.get_config()
    config.split = "random"
    with pytest.raises(ValueError, match="Unknown classifier split 'random'"):
        train_classifier.ClassifierTrainConfig.from_config(config)
