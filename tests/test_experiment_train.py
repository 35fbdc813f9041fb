"""The DDPM training and classifier training experiments: short runs, exact resume, NaN guard."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from ddss.configs import digits_classifier, digits_train
from ddss import experiments
from ddss.experiments import train
from ddss.models import digits as digits_model
from ddss.models import pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_config(**overrides):
    config = digits_train.get_config()
    config.model.block_out_channels = (16, 32)
    config.model.norm_num_groups = 4
    config.model.layers_per_block = 1
    config.steps = 6
    config.batch_size = 16
    config.log_every = 2
    config.checkpoint_every = 2
    config.eval_samples = 0
    for k, v in overrides.items():
        config[k] = v
    return config


def _ema(workdir):
    return pretrained.load(os.path.join(workdir, "unet_ema.safetensors")).params


def test_resume_after_a_kill_is_exact(tmp_path, monkeypatch):
    experiments.run(_tiny_config(), str(tmp_path / "straight"))
    reference = _ema(tmp_path / "straight")

    original = train.DigitsData.global_batch

    def killed_at_step_3(self, step):
        if step == 3:
            raise KeyboardInterrupt  # the process dies during step 3; steps 0-2 ran, checkpoint at 2
        return original(self, step)

    monkeypatch.setattr(train.DigitsData, "global_batch", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        experiments.run(_tiny_config(), str(tmp_path / "resumed"))
    monkeypatch.setattr(train.DigitsData, "global_batch", original)
    results = experiments.run(_tiny_config(), str(tmp_path / "resumed"))
    assert results["training"]["start_step"] == 2
    for a, b in zip(jax.tree.leaves(_ema(tmp_path / "resumed")), jax.tree.leaves(reference)):
        np.testing.assert_array_equal(a, b)
    logged = [json.loads(line)["step"] for line in open(tmp_path / "resumed" / "metrics.jsonl")]
    assert logged[-2:] == [4, 6]


def test_nan_loss_stops_with_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = train.DigitsData.global_batch
    monkeypatch.setattr(train.DigitsData, "global_batch",
                        lambda self, step: original(self, step) * (np.nan if step >= 3 else 1.0))
    with pytest.raises(FloatingPointError, match="last good checkpoint is step 2"):
        experiments.run(_tiny_config(), str(tmp_path))


def test_training_lowers_the_loss(tmp_path):
    results = experiments.run(_tiny_config(steps=60, log_every=10, checkpoint_every=60), str(tmp_path))
    losses = [json.loads(line)["loss"] for line in open(tmp_path / "metrics.jsonl")]
    assert losses[-1] < 0.7 * losses[0]
    assert results["training"]["final_loss"] == pytest.approx(losses[-1])


def test_bad_training_config(tmp_path):
    with pytest.raises(ValueError, match="trains on 'digits"):
        experiments.run(_tiny_config(dataset="cifar10"), str(tmp_path / "a"))
    with pytest.raises(ValueError, match="model takes"):
        config = _tiny_config()
        config.model.sample_size = 16
        experiments.run(config, str(tmp_path / "b"))


@pytest.mark.slow  # 75 s: the train experiment's run, exact resume and NaN guard run in CI above (a smaller UNet)
def test_digits_train_config_short_run_from_the_command_line(tmp_path):
    """The shipped model's own config, for two steps, with a 4-sample 1000-step evaluation."""
    cmd = [sys.executable, "-m", "ddss.main", "--config=ddss/configs/digits_train.py", f"--workdir={tmp_path}",
           "--config.steps=2", "--config.eval_samples=4", "--config.eval_batch_size=4"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["method"] for r in results["rows"]] == ["ddpm-1000", "data"]
    model = digits_model.load(str(tmp_path / "unet_ema.safetensors"))
    assert model.num_blocks == 18 and model.schedule.num_timesteps == 1000
    assert (tmp_path / "grids" / "ddpm-1000.png").exists()
    assert np.load(tmp_path / "samples" / "ddpm-1000_K1000.npz")["images"].shape == (4, 8, 8, 1)


def test_classifier_experiment_writes_loadable_weights(tmp_path):
    config = digits_classifier.get_config()
    config.epochs = 2
    results = experiments.run(config, str(tmp_path))
    assert set(results) >= {"test_accuracy", "fid_train_vs_test", "train_time_s"}
    cfg, params = digits_model.load_classifier(str(tmp_path / "digits_classifier.safetensors"))
    assert cfg.feature_dim == 64
    images = np.zeros((2, 8, 8, 1), np.float32)
    assert digits_model.feature_fn(str(tmp_path / "digits_classifier.safetensors"))(images).shape == (2, 64)
