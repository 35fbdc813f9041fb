"""Baselines on pretrained UNets: a diffusers checkpoint directory (configs/cifar10_ddpm.py, run here
on a tiny random-weight UNet2DModel of the same layout) and the shipped digits model."""
import json

import numpy as np
import pytest

from configs import cifar10_ddpm, digits_baselines
from conftest import require
from ddss import experiments


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
    for k, v in overrides.items():
        config[k] = v
    return config


def test_cifar10_config_runs_on_a_diffusers_checkpoint(tmp_path):
    checkpoint = _tiny_cifar_checkpoint(tmp_path / "ckpt")
    config = _small(cifar10_ddpm.get_config(), checkpoint=checkpoint)
    results = experiments.run(config, str(tmp_path / "work"))
    assert [(r["method"], r["K"]) for r in results["rows"]] == [("ddim-linear", 2), ("ddpm-3", 3)]
    for row in results["rows"]:
        assert row["fid"] is None and row["clip_denoised"] is True
        images = np.load(tmp_path / "work" / "samples" / f"{row['method']}_K{row['K']}.npz")["images"]
        assert images.shape == (6, 32, 32, 3) and np.all(np.abs(images) <= 1.0)  # clipped x̂_0 output
        assert np.isfinite(images).all() and images.std() > 0


def test_cifar10_config_without_checkpoint_says_where_to_get_it(tmp_path):
    with pytest.raises(ValueError, match="config.checkpoint is empty.*google/ddpm-cifar10-32"):
        experiments.run(_small(cifar10_ddpm.get_config()), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist.*huggingface-cli download"):
        experiments.run(_small(cifar10_ddpm.get_config(), checkpoint=str(tmp_path / "missing")), str(tmp_path))


def test_digits_baselines_scores_in_classifier_space(tmp_path):
    config = _small(digits_baselines.get_config(), num_samples=64, batch_size=64, reference_steps=4,
                    num_steps=(2, 8))
    rows = experiments.run(config, str(tmp_path))["rows"]
    fid = {(r["method"], r["K"]): r["fid"] for r in rows}
    assert {r["feature_space"] for r in rows} == {"digits_classifier"}
    assert fid[("ddim-linear", 8)] < fid[("ddim-linear", 2)]  # more steps, better samples
    assert rows[-1]["method"] == "data" and rows[-1]["n_samples"] == 360
