"""The `ddss` command line: configs by name from any directory, --help, one-line errors, path expansion."""
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from ddss import experiments, main


def _run(args, cwd, env=None, module="ddss"):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_help_lists_every_experiment_and_shipped_config(tmp_path):
    out = _run(["--help"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in experiments.EXPERIMENTS:
        assert f"\n  {name} " in out.stdout
    for name in main.shipped_configs():
        assert name in out.stdout
    assert "--show_config" in out.stdout and "--debug" in out.stdout
    # The installed console script (next to this interpreter) prints the same.
    script = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ddss"), "--help"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert script.returncode == 0 and script.stdout == out.stdout
    full = _run(["--helpfull"], cwd=tmp_path)  # absl's listing of every flag
    assert "--workdir" in full.stdout and "show_config" in full.stdout and "--config" in full.stdout


def test_config_by_name_or_path():
    shipped = main.shipped_configs()["digits_ddss"]
    assert main.resolve_config("digits_ddss") == shipped
    assert main.resolve_config("digits_ddss.py") == shipped
    assert main.resolve_config("configs/digits_ddss.py") == shipped  # the repository layout's older spelling
    assert main.resolve_config("digits_ddss:arg") == shipped + ":arg"
    assert main.resolve_config(shipped) == shipped
    with pytest.raises(main.UsageError, match="no shipped config named 'digits_dds'.*Did you mean digits_ddss"):
        main.resolve_config("digits_dds")
    with pytest.raises(main.UsageError, match="ddss --help"):
        main.resolve_config("elsewhere/nothing.py")


def test_paths_expand(monkeypatch):
    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.setenv("DDSS_DATA", "/data")
    config = ml_collections.ConfigDict({"a": "~/x", "b": {"c": "$DDSS_DATA/s.npz"}, "d": ("~/s1", "plain"), "e": 3})
    main.expand_paths(config)
    assert (config.a, config.b.c, config.d, config.e) == ("/home/u/x", "/data/s.npz", ("/home/u/s1", "plain"), 3)


@pytest.mark.parametrize("module", ["ddss", "ddss.main"])
def test_runs_from_any_directory_by_name_with_tilde_workdir(tmp_path, module):
    """The installed command with a shipped config name, from a directory that is not the
    repository, writing to `~/...`: the folder lands in $HOME, not in a folder named '~'."""
    home, cwd = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir(), cwd.mkdir()
    out = _run(["--config=gmm_baselines_test", "--workdir=~/runs/gmm", "--config.num_samples=64"], cwd=cwd,
               env={"HOME": str(home)}, module=module)
    assert out.returncode == 0, out.stderr[-2000:]
    results = json.loads((home / "runs" / "gmm" / "results.json").read_text())
    assert results["rows"] and not (cwd / "~").exists()


@pytest.mark.parametrize("args, status, message", [
    (["--config=nope", "--workdir=w"], 2, "no shipped config named 'nope'"),
    (["--config=gmm_baselines_test", "--workdir=w", "--config.nonexistent=1"], 2, "the config has no field"),
    (["--config=gmm_baselines_test", "--workdir=w", "--config.num_samples=abc"], 2, "--config.num_samples=abc"),
    (["--config=gmm_baselines_test"], 2, "--workdir is required"),
    (["--config=gmm_baselines_test", "--workdir=w", "--config.num_samples=-3"], 1, "num_samples must be"),
])
def test_errors_are_one_line(tmp_path, args, status, message):
    out = _run(args, cwd=tmp_path)
    assert out.returncode == status
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ddss: error: ") and message in lines[0], out.stderr


def test_debug_shows_the_traceback(tmp_path):
    out = _run(["--config=gmm_baselines_test", "--workdir=w", "--config.num_samples=-3", "--debug"], cwd=tmp_path)
    assert out.returncode == 1 and "Traceback (most recent call last)" in out.stderr


def test_show_config_prints_fields(tmp_path):
    out = _run(["--config=digits_ddss", "--show_config", "--config.train.steps=7"], cwd=tmp_path)
    assert out.returncode == 0 and "experiment: ddss" in out.stdout and "steps: 7" in out.stdout
