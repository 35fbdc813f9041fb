"""The seeds' ImageNet 64×64 experiments end to end, on tiny random-weight networks of the real
architectures saved as openai checkpoints (torch state dicts read with their flags), on TFDS' mock
`imagenet_resized/64x64`, with random FID-Inception weights:

- ddss/configs/ref_stats_imagenet64.py: statistics in both Inception layers;
- ddss/configs/imagenet64_iddpm_ddss.py: DDSS on an improved-DDPM model (learned variance, cosine
  schedule, T = 4000, rescaled time input), with the model's own learned-variance ancestral row;
- ddss/configs/imagenet64_adm_evolution.py: AutoDiffusion on a class-conditional ADM with its noisy
  classifier (guidance scale 1.0), labels drawn uniformly and recorded.
"""
import hashlib

import jax
import numpy as np
import pytest

from conftest import fake_tfds_data_source, random_inception_weights, require
from ddss import experiments, export, schedules
from ddss.configs import imagenet64_adm_evolution, imagenet64_iddpm_ddss, ref_stats_imagenet64
from ddss.experiments import evaluation, evolution, learn
from ddss.models import adm
from ddss.samplers import ddpm, guidance

# The real layouts at 64×64, narrowed: improved-DDPM's (legacy attention order, FiLM) and ADM-G's
# (class embedding, resblock up/down, new attention order, head channels).
IDDPM = dict(imagenet64_iddpm_ddss.IDDPM_FLAGS, num_channels=32, num_res_blocks=1, channel_mult="1,2",
             attention_resolutions="32", num_heads=2)
ADM_G = dict(imagenet64_adm_evolution.ADM_G_FLAGS, num_channels=32, num_res_blocks=1, channel_mult="1,2",
             attention_resolutions="32", num_head_channels=16)
CLASSIFIER = dict(imagenet64_adm_evolution.CLASSIFIER_FLAGS, classifier_width=32, classifier_depth=1,
                  classifier_attention_resolutions="8")


def _openai_checkpoint(path, flags, *, classifier=False, seed=0):
    th = require("torch")
    script_util = require("guided_diffusion.script_util")
    th.manual_seed(seed)
    if classifier:
        net = script_util.create_classifier(**flags, classifier_use_fp16=False)
    else:
        model_flags = {k: v for k, v in flags.items() if k not in adm.DIFFUSION_FLAGS}
        net = script_util.create_model(**model_flags)
    with th.no_grad():  # every weight random, zero-initialised output convolutions included
        for p in net.parameters():
            p.add_(0.2 * th.randn_like(p))
    th.save(net.state_dict(), str(path))
    return str(path)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Random Inception weights; mock-ImageNet statistics in its pool (2048) and block-2 (768) layers."""
    import tensorflow_datasets as tfds

    tmp = tmp_path_factory.mktemp("imagenet64")
    weights = random_inception_weights(tmp / "inception.safetensors")
    out = {"weights": weights}
    for output in ("pool", "pool_768"):
        config = ref_stats_imagenet64.get_config()
        config.data.data_dir = str(tmp / "tfds")
        config.features.update(weights=weights, output=output, batch_size=5)
        config.batch_size = 5
        config.save_features = output == "pool_768"
        with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=fake_tfds_data_source):
            experiments.run(config, str(tmp / output))
        out[output] = str(tmp / output)
    return out


def _small(config, assets, checkpoint, flags):
    config.checkpoint = checkpoint
    config.adm.flags = flags
    config.features.update(weights=assets["weights"], batch_size=4)
    config.eval_features.update(weights=assets["weights"], batch_size=4)
    config.reference_stats = assets["pool_768"] + "/stats.npz"
    config.eval_reference_stats = assets["pool"] + "/stats.npz"
    config.num_steps = (2,)
    config.reference_steps = 3
    config.num_samples = 4
    config.batch_size = 4
    config.ceiling_cache = None
    return config


def test_ref_stats_imagenet64_writes_both_layers(assets):
    for output, dim in (("pool", 2048), ("pool_768", 768)):
        with np.load(assets[output] + "/stats.npz") as f:
            assert f["mu"].shape == (dim,) and f["sigma"].shape == (dim, dim)
    assert np.load(assets["pool_768"] + "/features.npy").shape[1] == 768


def test_imagenet64_iddpm_ddss_end_to_end(assets, tmp_path):
    """DDSS with KID in Inception's 768-d layer on an improved-DDPM checkpoint; the headline FID in the
    2048-d pool layer; the ddpm row is the model's own learned-variance ancestral sampler."""
    checkpoint = _openai_checkpoint(tmp_path / "imagenet64_uncond.pt", IDDPM)
    config = _small(imagenet64_iddpm_ddss.get_config(), assets, checkpoint, IDDPM)
    config.methods = ("ddpm-linear",)
    config.reference_features = assets["pool_768"] + "/features.npy"
    config.train.update(steps=2, warmup_steps=0, batch_size=2, eval_every=2, val_samples=2, checkpoint_every=2,
                        log_every=1)
    work = tmp_path / "work"
    results = experiments.run(config, str(work))
    rows = {(r["method"], r["K"]): r for r in results["rows"]}
    assert set(rows) == {("ggdm+pred+time", 2), ("ddpm-linear", 2), ("ddpm-3", 3)}
    assert "conditioning" not in results  # an unconditional model samples without labels
    learned = rows[("ggdm+pred+time", 2)]
    assert learned["feature_space"] == "inception" and learned["train_features"]["name"] == "inception:pool_768"
    assert not learned["spaces_coincide"] and np.isfinite(learned["fid"]) and np.isfinite(learned["fid_train_space"])
    sampler = export.load_sampler(str(work / learned["export"]), num_steps=2)
    assert sampler.metadata["model"]["guidance_scale"] is None and sampler.params.schedule.num_timesteps == 4000

    # The ddpm row samples with the learned variance (log-interpolated between β and β̃ of the respaced
    # schedule): the same noise through ddpm.sample with variance="learned_range" gives its samples,
    # and the fixed "small" variance does not.
    base = learn.DDSSConfig.from_config(config).base
    target, bank, key = evaluation.setup(base, str(tmp_path / "again"))
    model = adm.load(checkpoint, **IDDPM)
    got = np.load(work / "samples" / "ddpm-linear_K2.npz")["images"]

    def run(variance):
        params = ddpm.init(model.schedule, schedules.timesteps(model.schedule, "linear", 2), variance=variance)
        fn = model.model_output if variance == "learned_range" else model.eps_fn
        sample = jax.jit(lambda x, k: ddpm.sample(params, fn, x, k, clip_denoised=True))
        return np.asarray(sample(bank, jax.random.fold_in(key, 0)))  # the harness's key of its first batch

    np.testing.assert_allclose(got, run("learned_range"), atol=1e-4)
    assert np.abs(got - run("small")).max() > 1e-2


def test_imagenet64_adm_evolution_end_to_end(assets, tmp_path):
    """AutoDiffusion's joint search on a class-conditional ADM guided by its noisy classifier: labels
    drawn uniformly and recorded with the scale, the winner exported with the model's hash and scale."""
    checkpoint = _openai_checkpoint(tmp_path / "64x64_diffusion.pt", ADM_G, seed=1)
    classifier = _openai_checkpoint(tmp_path / "64x64_classifier.pt", CLASSIFIER, classifier=True, seed=2)
    config = _small(imagenet64_adm_evolution.get_config(), assets, checkpoint, ADM_G)
    config.adm.classifier = classifier
    config.adm.classifier_flags = CLASSIFIER
    config.methods = ()
    config.update(fitness_samples=2, chunk_size=4, searches=(("joint", 2),))
    config.search.update(population=4, parents=2, mutants=1, crossovers=1, generations=2, seed_mutants=1,
                         stage1_generations=1, ramp_generations=1)
    config.joint.extra_steps = 0
    work = tmp_path / "work"
    results = experiments.run(config, str(work))
    with open(classifier, "rb") as f:
        classifier_sha = hashlib.sha256(b"64x64_classifier.pt\0" + f.read()).hexdigest()
    assert results["conditioning"] == {"num_classes": 1000, "labels": "uniform", "guidance": {
        "kind": "classifier", "scale": 1.0, "classifier_sha256": classifier_sha}}
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"evolution-joint", "ddpm-3"}
    row = rows["evolution-joint"]
    assert row["feature_space"] == "inception" and np.isfinite(row["fid"]) and row["K"] == 2
    sampler = export.load_sampler(str(work / row["export"]), num_blocks=adm.load(checkpoint, **ADM_G).num_blocks,
                                  guidance_scale=1.0)
    assert sampler.metadata["model"]["num_classes"] == 1000
    with pytest.raises(export.SamplerFileError, match="guidance scale 1.0, but it is used here with no guidance"):
        export.load_sampler(str(work / row["export"]), guidance_scale=0.0)

    # The ceiling is ADM-G's own sampler as guided-diffusion runs it: learned variance, the unguided ε,
    # and the classifier gradient on the mean (condition_mean), with the bank's labels.
    base = evolution.EvolutionConfig.from_config(config).base
    _, bank, key = evaluation.setup(base, str(tmp_path / "again"))
    assert np.bincount(bank.y, minlength=1000).max() == 1  # 4 labels drawn uniformly: 4 distinct classes
    model = adm.load(checkpoint, **ADM_G)
    c_config, c_params = adm.load_classifier(classifier, **CLASSIFIER)
    logits = lambda x, t: adm.logits_fn(c_config, c_params)(x, model.network_time(t))
    params = ddpm.init(model.schedule, schedules.timesteps(model.schedule, "linear", 3), variance="learned_range")
    want = jax.jit(lambda b, k: ddpm.sample(
        params, lambda x, t: model.model_output(x, t, b.y), b.x, k, clip_denoised=True,
        cond_fn=lambda x, t: guidance.classifier_gradient(logits, 1.0)(x, t, b.y)))(bank, jax.random.fold_in(key, 0))
    got = np.load(work / "samples" / "ddpm-3_K3.npz")["images"]
    np.testing.assert_allclose(got, np.asarray(want), atol=1e-4)
