"""Baselines on pretrained UNets: a diffusers checkpoint directory (ddss/configs/cifar10_ddpm.py, run here
on a tiny random-weight UNet2DModel of the same layout) and the shipped digits model."""
import json

import numpy as np
import pytest

from ddss.configs import cifar10_ddpm, digits_baselines, ref_stats_cifar10
from conftest import fake_tfds_data_source, random_inception_weights, require
from ddss import experiments
from ddss.experiments import targets
from ddss.metrics import fid, features, stats
from ddss.models.params_io import WeightFileError


def _tiny_cifar_checkpoint(directory):
    torch = require("torch")
    diffusers = require("diffusers")
    torch.manual_seed(0)
    model = diffusers.UNet2DModel(
        sample_size=32, block_out_channels=(8, 8, 16, 16), norm_num_groups=4, layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, attention_head_dim=None)
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "scheduler_config.json").write_text(json.dumps(
        {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "num_train_timesteps": 1000}))
    return str(directory)


def _small(config, **overrides):
    config.num_steps = (2,)
    config.methods = ("ddim-linear",)
    config.reference_steps = 3
    config.num_samples = 6
    config.batch_size = 4
    config.ceiling_cache = None
    for k, v in overrides.items():
        config[k] = v
    return config


def _mock_cifar_stats(tmp_path, weights):
    """ddss/configs/ref_stats_cifar10.py on TFDS' mock cifar10 (10 examples), with random Inception weights."""
    import tensorflow_datasets as tfds

    config = ref_stats_cifar10.get_config()
    config.data.data_dir = str(tmp_path / "tfds")
    config.features.weights = weights
    config.batch_size = config.features.batch_size = 4
    config.save_features = True
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=fake_tfds_data_source):
        experiments.run(config, str(tmp_path / "ref"))
    return str(tmp_path / "ref" / "stats.npz"), np.load(tmp_path / "ref" / "features.npy")


def test_cifar10_config_runs_on_a_diffusers_checkpoint(tmp_path):
    """Reference statistics (ref_stats on mock TFDS cifar10) → baselines of a diffusers checkpoint in
    Inception space: FID against those statistics, Inception Score, saved samples."""
    weights = random_inception_weights(tmp_path / "inception.safetensors")
    ref_path, ref_feats = _mock_cifar_stats(tmp_path, weights)
    mu, sigma, info = stats.load(ref_path)
    assert info["num_samples"] == 10 and mu.shape == (2048,) and info["dataset"] == "cifar10"
    np.testing.assert_allclose(mu, ref_feats.astype(np.float64).mean(0), rtol=1e-6, atol=1e-6)

    checkpoint = _tiny_cifar_checkpoint(tmp_path / "ckpt")
    config = _small(cifar10_ddpm.get_config(), checkpoint=checkpoint, num_samples=10, reference_stats=ref_path)
    config.features.weights = weights
    config.features.batch_size = 4
    results = experiments.run(config, str(tmp_path / "work"))
    assert [(r["method"], r["K"]) for r in results["rows"]] == [("ddim-linear", 2), ("ddpm-3", 3)]
    extractor = features.inception_extractor(weights, batch_size=4)
    for row in results["rows"]:
        assert row["clip_denoised"] is True and row["feature_space"] == "inception"
        images = np.load(tmp_path / "work" / "samples" / f"{row['method']}_K{row['K']}.npz")["images"]
        assert images.shape == (10, 32, 32, 3) and np.all(np.abs(images) <= 1.0)  # clipped x̂_0 output
        assert np.isfinite(images).all() and images.std() > 0
        # The row's FID is the Fréchet distance of these samples' Inception features to the data's.
        want = fid.frechet_distance_of(extractor.features(targets.quantize_uint8(images)), mu, sigma)
        assert row["fid"] == pytest.approx(want, rel=1e-6) and row["fid"] > 0
        # No eval_features: the evaluation space is the train space, and the row says so.
        assert row["spaces_coincide"] is True and row["fid_train_space"] == row["fid"]
        assert row["eval_features"]["sha256"] == features.file_sha256(weights)
        assert row["kid"] is None  # a statistics file holds no features
        assert 1.0 <= row["is"] <= 1008 and row["is_std"] >= 0


def test_cifar10_config_needs_reference_statistics(tmp_path):
    checkpoint = _tiny_cifar_checkpoint(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="reference_stats is not set.*--config=ref_stats_cifar10"):
        experiments.run(_small(cifar10_ddpm.get_config(), checkpoint=checkpoint), str(tmp_path / "a"))
    missing = _small(cifar10_ddpm.get_config(), checkpoint=checkpoint, reference_stats=str(tmp_path / "missing.npz"))
    with pytest.raises(WeightFileError, match="No Inception weights found.*pt_inception-2015-12-05-6726825d.pth"):
        experiments.run(missing, str(tmp_path / "b"))  # default weights not on this machine
    missing.features.weights = random_inception_weights(tmp_path / "inception.safetensors")
    with pytest.raises(stats.StatsFileError, match="not found.*missing.npz.*--config=ref_stats_cifar10"):
        experiments.run(missing, str(tmp_path / "b"))
    unscored = _small(cifar10_ddpm.get_config(), checkpoint=checkpoint)
    unscored.features.name = ""  # no feature network: samples only, rows unscored
    rows = experiments.run(unscored, str(tmp_path / "c"))["rows"]
    assert all(r["fid"] is None for r in rows)


def test_cifar10_config_without_checkpoint_says_where_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="config.checkpoint is not set.*google/ddpm-cifar10-32"):
        experiments.run(_small(cifar10_ddpm.get_config()), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist.*huggingface-cli download"):
        experiments.run(_small(cifar10_ddpm.get_config(), checkpoint=str(tmp_path / "missing")), str(tmp_path))


def test_digits_baselines_scores_in_the_evaluation_space(tmp_path):
    config = _small(digits_baselines.get_config(), num_samples=64, batch_size=64, reference_steps=4,
                    num_steps=(2, 8), ceiling_cache=str(tmp_path / "cache"))
    rows = experiments.run(config, str(tmp_path))["rows"]
    fid = {(r["method"], r["K"]): r["fid"] for r in rows}
    assert {r["feature_space"] for r in rows} == {"digits_eval"}
    assert {r["train_features"]["name"] for r in rows} == {"digits"} and not any(r["spaces_coincide"] for r in rows)
    assert fid[("ddim-linear", 8)] < fid[("ddim-linear", 2)]  # more steps, better samples
    assert rows[-1]["method"] == "data" and rows[-1]["n_samples"] == 360



@pytest.fixture(scope="module")
def cifar_assets(tmp_path_factory):
    """Random Inception weights, mock-cifar10 reference statistics and features, a tiny checkpoint."""
    tmp_path = tmp_path_factory.mktemp("cifar")
    weights = random_inception_weights(tmp_path / "inception.safetensors")
    ref_path, _ = _mock_cifar_stats(tmp_path, weights)
    return weights, ref_path, str(tmp_path / "ref" / "features.npy"), _tiny_cifar_checkpoint(tmp_path / "ckpt")


def _cifar10_ddss_config(cifar_assets, **overrides):
    from ddss.configs import cifar10_ddss

    weights, ref_path, _, checkpoint = cifar_assets
    config = _small(cifar10_ddss.get_config(), checkpoint=checkpoint, num_samples=4, reference_stats=ref_path,
                    methods=(), **overrides)
    config.features.weights = weights
    config.features.batch_size = 4
    return config


@pytest.mark.slow  # 85 s each; tests/test_imagenet64.py runs both experiments end to end on real layouts in CI
def test_cifar10_ddss_config_runs_end_to_end_on_a_diffusers_checkpoint(cifar_assets, tmp_path):
    """ddss/configs/cifar10_ddss.py: mock TFDS cifar10 → reference statistics and features (ref_stats) →
    DDSS with KID through the (random-weight) FID Inception at 299×299 → learned and ceiling rows."""
    from ddss import load_sampler

    config = _cifar10_ddss_config(cifar_assets, reference_features=cifar_assets[2])
    config.train.update(steps=2, warmup_steps=0, batch_size=2, eval_every=2, val_samples=2, checkpoint_every=2, log_every=1)
    results = experiments.run(config, str(tmp_path / "work"))
    rows = {(r["method"], r["K"]): r for r in results["rows"]}
    assert set(rows) == {("ggdm+pred+time", 2), ("ddpm-3", 3)}
    learned = rows[("ggdm+pred+time", 2)]
    assert learned["feature_space"] == "inception" and learned["clip_denoised"] is True
    assert np.isfinite(learned["fid"]) and learned["training"]["steps"] == 2
    sampler = load_sampler(str(tmp_path / "work" / learned["export"]), family="ggdm+pred+time", num_steps=2)
    assert sampler.clip_denoised is True
    metrics = [json.loads(line) for line in (tmp_path / "work" / "runs" / "ggdm+pred+time_K2" / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2] and all(np.isfinite(m["kid"]) for m in metrics[1:])


def test_cifar10_ddss_needs_reference_features_for_kid(cifar_assets, tmp_path):
    with pytest.raises(ValueError, match="KID loss needs real-data features.*save_features=True"):
        experiments.run(_cifar10_ddss_config(cifar_assets), str(tmp_path / "work"))


@pytest.mark.slow  # 85 s each; tests/test_imagenet64.py runs both experiments end to end on real layouts in CI
def test_cifar10_evolution_config_runs_end_to_end_on_a_diffusers_checkpoint(cifar_assets, tmp_path):
    """ddss/configs/cifar10_evolution.py: the joint search (timesteps + skipped blocks) on a tiny random-weight
    UNet2DModel, FID fitness through the (random-weight) FID Inception against mock-cifar10 statistics,
    the winner exported and rescored with its skip lists static."""
    from ddss.configs import cifar10_evolution
    from ddss import load_sampler

    weights, ref_path, _, checkpoint = cifar_assets
    config = _small(cifar10_evolution.get_config(), checkpoint=checkpoint, num_samples=4, reference_stats=ref_path,
                    methods=(), fitness_samples=2, chunk_size=4, searches=(("joint", 2),))
    config.features.weights = weights
    config.features.batch_size = 4
    config.search.update(population=4, parents=2, mutants=1, crossovers=1, generations=2, seed_mutants=1,
                         stage1_generations=1, ramp_generations=1)
    config.joint.extra_steps = 1  # K = 2 or 3: two compiled chunk shapes
    results = experiments.run(config, str(tmp_path / "work"))
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"evolution-joint", "ddpm-3"}
    row = rows["evolution-joint"]
    assert row["feature_space"] == "inception" and np.isfinite(row["fid"]) and row["budget"] == 2 * 18
    assert row["block_executions"] <= 36 and row["K"] in (2, 3)
    assert row["search"]["candidates_evaluated"] == 8 and row["search"]["stage1_end"] == 1
    sampler = load_sampler(str(tmp_path / "work" / row["export"]), num_blocks=18)
    assert [list(s) for s in sampler.skip] == row["skip"] and sampler.clip_denoised is True
