"""The baselines experiment end to end on the tiny config: files, contract, and sane scores."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ddss.configs import gmm_baselines_test
from ddss import experiments
from ddss.experiments import baselines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_writes_the_results_contract(tmp_path):
    config = gmm_baselines_test.get_config()
    results = experiments.run(config, str(tmp_path))
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(results))
    methods = {(r["method"], r["K"]) for r in on_disk["rows"]}
    expected = {(m, k) for m in config.methods for k in config.num_steps}
    assert expected | {("ddpm-50", 50), ("data", 0)} == methods
    for row in on_disk["rows"]:
        assert {"method", "K", "nfe", "fid", "fid_train_space", "precision", "recall", "kid", "n_samples", "heldout",
                "eval_features", "train_features"} <= set(row)
        # The mixture has no feature network: both spaces are the data, and the rows say so.
        assert row["eval_features"] == row["train_features"] == {"name": "data", "sha256": None}
        assert row["spaces_coincide"] is True and row["fid"] == row["fid_train_space"]
        assert row["heldout"] is True and row["n_samples"] == config.num_samples
        images = np.load(tmp_path / "samples" / f"{row['method']}_K{row['K']}.npz")["images"]
        assert images.shape == (config.num_samples, 4, 4, 1) and images.dtype == np.float32
        assert (tmp_path / "grids" / f"{row['method']}_K{row['K']}.png").exists()
    assert (tmp_path / "fid_vs_k.png").exists()
    fid = {(r["method"], r["K"]): r["fid"] for r in on_disk["rows"]}
    # More steps help, and the many-step ceiling is far better than 3 DDIM steps.
    assert fid[("ddim-quadratic", 6)] < fid[("ddim-quadratic", 3)]
    assert fid[("ddpm-50", 50)] < fid[("ddim-quadratic", 3)]


def test_ceiling_is_computed_once_and_then_read_from_the_cache(tmp_path):
    config = gmm_baselines_test.get_config()
    config.methods, config.num_samples, config.ceiling_cache = (), 32, str(tmp_path / "cache")
    first = experiments.run(config, str(tmp_path / "a"))["rows"]
    assert len(os.listdir(tmp_path / "cache")) == 1
    second = experiments.run(config, str(tmp_path / "b"))["rows"]
    assert "cached" not in first[0] and second[0]["cached"].startswith(str(tmp_path / "cache"))
    assert second[0]["fid"] == first[0]["fid"] and second[0]["wall_time_s"] == first[0]["wall_time_s"]
    config.eval_seed = 1  # another noise bank: not the cached one
    assert "cached" not in experiments.run(config, str(tmp_path / "c"))["rows"][0]
    config.reference_steps = 0  # no ceiling row at all (a small trial run)
    assert [r["method"] for r in experiments.run(config, str(tmp_path / "d"))["rows"]] == ["data"]


def test_cli_with_override(tmp_path):
    cmd = [sys.executable, "-m", "ddss.main", "--config=ddss/configs/gmm_baselines_test.py", f"--workdir={tmp_path}",
           "--config.num_steps=(4,)", "--config.methods=('ddim-linear',)", "--config.reference_steps=20"]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [(r["method"], r["K"]) for r in rows] == [("ddim-linear", 4), ("ddpm-20", 20), ("data", 0)]


def test_cli_xla_flags_add_cpu_defaults_and_respect_the_users():
    from ddss.main import xla_flags

    ynn = "--xla_cpu_experimental_ynn_fusion_type=dot"
    assert xla_flags({}) == ynn
    assert xla_flags({"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}) == \
        f"--xla_force_host_platform_device_count=8 {ynn}"
    assert xla_flags({"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}) == \
        "--xla_cpu_experimental_ynn_fusion_type="  # the user's own setting wins
    assert xla_flags({"DDSS_XLA_DEFAULTS": "0"}) is None
    assert xla_flags({"DDSS_XLA_DEFAULTS": "0", "XLA_FLAGS": "--a=1"}) == "--a=1"


@pytest.mark.parametrize(
    "field,value,match",
    [("methods", ("ddim-cubic",), "Unknown method"), ("methods", ("ddjm-linear",), "Unknown method"),
     ("num_steps", (0,), "config.num_steps must be an integer ≥ 1"), ("num_steps", (1001,), "exceeds the mixture's T = 1000"), ("schedule", "sigmoid", "Unknown schedule")],
)
def test_bad_config_gives_a_clear_error(tmp_path, field, value, match):
    config = gmm_baselines_test.get_config()
    config[field] = value
    with pytest.raises(ValueError, match=match):
        baselines.run(config, str(tmp_path))


def test_unknown_experiment(tmp_path):
    config = gmm_baselines_test.get_config()
    config.experiment = "nope"
    with pytest.raises(ValueError, match="Unknown experiment"):
        experiments.run(config, str(tmp_path))


def test_the_shipped_ceiling_is_found_by_the_models_stable_identity():
    """The cache key comes from the weight file's bytes, not from arrays computed at run time: a schedule
    table that differs in its last bits (another machine, another XLA) still finds the shipped file."""
    import dataclasses

    import jax.numpy as jnp

    from ddss.configs import digits_baselines
    from ddss import schedules
    from ddss.experiments import evaluation, targets

    cfg = baselines.BaselinesConfig.from_config(digits_baselines.get_config())
    target = targets.digits_target()
    path = evaluation.ceiling_cache_path(cfg, target)
    assert os.path.dirname(path) == evaluation.SHIPPED_CEILINGS and os.path.exists(path)
    table = np.asarray(target.schedule.log_alpha_bar_table)
    nudged = schedules.Schedule(jnp.asarray(np.nextafter(table, np.float32(0))))
    assert not np.array_equal(np.asarray(nudged.log_alpha_bar_table), table)
    assert evaluation.ceiling_cache_path(cfg, dataclasses.replace(target, schedule=nudged)) == path
    other = dataclasses.replace(cfg, eval_seed=1)  # another held-out bank: another file
    assert evaluation.ceiling_cache_path(other, target) != path
