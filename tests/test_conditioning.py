"""Class labels as a sampler input (ddss.samplers.conditioning) and class-conditional ADM targets in the
evaluation harness: labels reach the network, new labels reuse the compiled sampler, and every bad
input (missing or out-of-range labels, guidance without a classifier, a classifier of another
resolution, an unknown label draw) gets one clear error."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ddss import export
from ddss.experiments import baselines, evaluation, targets
from ddss.models import adm, params_io
from ddss.samplers import conditioning, ddim


def _moved(params, seed):
    """Every weight moved away from its initialisation (zero-initialised output convolutions included)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [p + 0.2 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def write_adm(path, *, class_cond=True, size=16, **extra):
    flags = dict(image_size=size, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
                 num_heads=2, use_scale_shift_norm=True, learn_sigma=True, class_cond=class_cond, **extra)
    config = adm.ADMConfig.from_flags(**flags)
    model = adm.ADMModel(config, _moved(adm.init_params(config, jax.random.key(0)), 1), adm.schedule_spec("linear"))
    adm.save(str(path), model)
    return str(path)


def write_classifier(path, size=16):
    flags = dict(image_size=size, classifier_width=32, classifier_depth=1, classifier_attention_resolutions="8",
                 channel_mult="1,2")
    config = adm.ClassifierConfig.from_flags(**flags)
    params = _moved(adm.init_classifier_params(config, jax.random.key(2)), 3)
    params_io.save(str(path), params, {"kind": "adm_classifier", "config": config.to_dict(), "flags": flags})
    return str(path)


def _adm(**kw):
    return ml_collections.ConfigDict({"flags": {}, "classifier": None, "classifier_flags": {},
                                      "classifier_scale": 0.0, **kw})


def test_label_draws():
    key = jax.random.key(0)
    uniform = conditioning.draw("uniform", 1003, 10, key)
    counts = np.bincount(uniform, minlength=10)
    assert uniform.dtype == np.int32 and counts.max() - counts.min() <= 1 and counts.sum() == 1003
    assert not np.all(np.diff(uniform) >= 0)  # shuffled, not sorted by class
    random = conditioning.draw("random", 1003, 10, key)
    assert random.min() >= 0 and random.max() <= 9 and np.bincount(random).max() - np.bincount(random).min() > 1
    with pytest.raises(ValueError, match="Unknown label draw 'balanced'.*uniform.*random"):
        conditioning.draw("balanced", 4, 10, key)
    bank = conditioning.Labelled(np.zeros((5, 2, 2, 1)), np.arange(5))
    part = bank[1:3]
    assert len(part) == 2 and part.y.tolist() == [1, 2] and part.shape == (2, 2, 2, 1)
    assert conditioning.split(np.zeros(3))[1] is None


def test_labels_reach_the_network_and_new_labels_do_not_recompile(tmp_path):
    """A class-conditional target's baseline sampler takes a Labelled batch: other labels give other samples
    from the same noise, through the same compiled program."""
    target = targets.adm_target(write_adm(tmp_path / "g.safetensors"), _adm())
    assert target.num_classes == 1000 and target.guidance is None
    params = (ddim.init(target.schedule, np.array([999.0, 500.0, 1.0])), target.params)
    cfg = ml_collections.ConfigDict({"clip_denoised": True})
    fn = jax.jit(lambda p, b, key: evaluation._sample(ddim, target, p, b, key, cfg))
    x = np.asarray(jax.random.normal(jax.random.key(1), (4, 16, 16, 3)))
    a, _ = fn(params, conditioning.Labelled(x, np.array([0, 1, 2, 3], np.int32)), jax.random.key(2))
    b, _ = fn(params, conditioning.Labelled(x, np.array([7, 8, 9, 999], np.int32)), jax.random.key(2))
    again, _ = fn(params, conditioning.Labelled(x, np.array([0, 1, 2, 3], np.int32)), jax.random.key(2))
    assert fn._cache_size() == 1
    assert np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-3
    np.testing.assert_array_equal(np.asarray(a), np.asarray(again))


def test_class_conditional_bad_input(tmp_path):
    g = write_adm(tmp_path / "g.safetensors")
    target = targets.adm_target(g, _adm())
    x, t = jnp.zeros((2, 16, 16, 3)), jnp.full((2,), 10.0)
    with pytest.raises(ValueError, match="samples with class labels.*conditioning.Labelled"):
        target.apply(target.params, x, t)
    with pytest.raises(ValueError, match=r"must lie in \[0, 999\].*1000 classes.*from 3 to 1000"):
        target.apply(target.params, x, t, np.array([3, 1000]))
    model = adm.load(g)
    with pytest.raises(ValueError, match=r"labels y must be \[B\] = \[3\], one per image; got shape \(2,\)"):
        model.eps_fn(jnp.zeros((3, 16, 16, 3)), jnp.full((3,), 10.0), np.array([1, 2]))
    with pytest.raises(ValueError, match="classifier_scale = 1.0 asks for classifier guidance.*classifier is not set"):
        targets.adm_target(g, _adm(classifier_scale=1.0))
    other = write_classifier(tmp_path / "c32.safetensors", size=32)
    with pytest.raises(ValueError, match="classifier .*c32.safetensors is for 32×32 images, the model samples 16×16"):
        targets.adm_target(g, _adm(classifier=other, classifier_scale=1.0))
    config = ml_collections.ConfigDict({"experiment": "baselines", "model": "adm", "checkpoint": g, "seed": 0,
                                        "num_steps": (2,), "methods": ("ddim-linear",), "reference_steps": 0,
                                        "num_samples": 4, "batch_size": 4, "clip_denoised": True,
                                        "class_labels": "balanced", "adm": _adm()})
    with pytest.raises(ValueError, match="config.class_labels = 'balanced'.*uniform"):
        baselines.BaselinesConfig.from_config(config)
    config.class_labels = "uniform"
    config.adm.classifier_scale = -1.0
    with pytest.raises(ValueError, match="classifier_scale must be a finite number ≥ 0"):
        baselines.BaselinesConfig.from_config(config)


def test_guided_target_and_the_export_record(tmp_path):
    """Classifier guidance moves ε by −√(1−ᾱ_t)·s·∇ log p(y|x) (its parity with guided_diffusion is in
    test_guidance.py); here: the target applies it at its scale, and an export made for it records the
    model and the scale, and is refused for another of either."""
    g, c = write_adm(tmp_path / "g.safetensors"), write_classifier(tmp_path / "c.safetensors")
    plain = targets.adm_target(g, _adm())
    guided = targets.adm_target(g, _adm(classifier=c, classifier_scale=2.0))
    assert guided.guidance["scale"] == 2.0 and guided.identity != plain.identity
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    t, y = jnp.full((2,), 300.0), np.array([4, 5])
    moved = np.asarray(guided.apply(guided.params, x, t, y)) - np.asarray(plain.apply(plain.params, x, t, y))
    assert np.abs(moved).max() > 1e-4

    path = str(tmp_path / "sampler.safetensors")
    record = evaluation.model_record(guided)
    export.save_evolved_sampler(path, [900, 400, 10], np.zeros((3, guided.num_blocks), bool), kind="ddim",
                                schedule=guided.schedule, clip_denoised=True, model=record)
    sampler = export.load_sampler(path, model_sha256=guided.identity, guidance_scale=2.0)
    assert sampler.metadata["model"] == {"sha256": guided.identity, "num_classes": 1000,
                                         "guidance": guided.guidance, "guidance_scale": 2.0}
    with pytest.raises(export.SamplerFileError, match="with guidance scale 2.0, but it is used here with guidance "
                                                      "scale 1.0"):
        export.load_sampler(path, guidance_scale=1.0)
    with pytest.raises(export.SamplerFileError, match="guidance scale 2.0, but it is used here with no guidance"):
        export.load_sampler(path, model_sha256=guided.identity, guidance_scale=0.0)
    with pytest.raises(export.SamplerFileError, match="learned or searched for another model"):
        export.load_sampler(path, model_sha256=plain.identity)
