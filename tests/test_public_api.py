"""The public API: a light `import ddss`, the shipped learned sampler, and timesteps as JSON."""
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

import ddss
from conftest import require
from ddss import schedules
from ddss.models import digits
from ddss.samplers import dpm_solver


def test_import_ddss_loads_no_tfds_search_experiments_or_plotting():
    script = ("import sys, ddss; heavy = [m for m in ('tensorflow_datasets', 'tensorflow', 'matplotlib', 'ddss.search', "
              "'ddss.experiments', 'ddss.data.tfds', 'ddss.metrics', 'orbax') if m in sys.modules]; print(heavy); "
              "ddss.load_sampler, ddss.samplers.ddim, ddss.models.digits.load; "
              "assert ddss.data.load_digits is not None and 'ddss.data.tfds' not in sys.modules; "
              "assert ddss.data.DataConfig is not None and 'ddss.data.tfds' in sys.modules; "
              "assert ddss.metrics.fid is not None and ddss.search.evolution is not None")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_public_names_resolve():
    for name in ddss.__all__:
        assert getattr(ddss, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ddss.nope  # noqa: B018


def _eval_fid(samples) -> float:
    from ddss.experiments import targets

    return targets.digits_target().score(np.asarray(samples))["fid"]


def test_shipped_learned_sampler_beats_the_solver_users_reach_for():
    """The shipped K = 5 sampler against DPM-Solver++(2M) on the λ-uniform grid at K = 5 (the usual
    default), on 500 held-out noise draws, in the evaluation space no loss uses (measured at 2000
    samples: 0.828 against 4.529)."""
    model = digits.load()
    sampler = digits.load_learned_sampler()
    assert (sampler.family, sampler.num_steps) == ("ggdm+pred+time", 5)
    noise = jax.random.normal(jax.random.key(0), (500, 8, 8, 1))
    learned = jax.jit(lambda p, x: ddss.samplers.ggdm.sample(p, model.eps_fn, x, jax.random.key(1)))(
        sampler.params, noise)
    params = dpm_solver.init(model.schedule, schedules.timesteps(model.schedule, "logsnr", 5), order=2)
    solver = jax.jit(lambda p, x: dpm_solver.sample(p, model.eps_fn, x, jax.random.key(1)))(params, noise)
    fid_learned, fid_solver = _eval_fid(learned), _eval_fid(solver)
    assert fid_learned < 0.6 * fid_solver, (fid_learned, fid_solver)


def test_every_export_has_a_timesteps_json_twin(tmp_path):
    model = digits.load()
    sampler = digits.load_learned_sampler()
    record = json.loads(open(digits.LEARNED_SAMPLER_FILE.replace(".safetensors", ".timesteps.json")).read())
    exact = np.asarray(ddss.samplers.ggdm.times(sampler.params), np.float64)
    assert record["timesteps"] == [int(round(v)) for v in exact] and record["num_train_timesteps"] == 1000
    assert all(a > b for a, b in zip(record["timesteps"], record["timesteps"][1:]))

    path = str(tmp_path / "searched.safetensors")
    mask = np.zeros((3, model.num_blocks), bool)
    mask[1, [0, 2]] = True
    ddss.save_evolved_sampler(path, [50, 900, 400], mask, kind="ddim", schedule=model.schedule, clip_denoised=False)
    twin = json.loads((tmp_path / "searched.timesteps.json").read_text())
    assert twin["timesteps"] == [900, 400, 50] and twin["skip"] == [[0, 2], [], []]  # sorted, skips kept with times


def test_timesteps_json_drives_a_diffusers_scheduler():
    """The JSON list goes straight into a diffusers scheduler's custom-timesteps argument."""
    diffusers = require("diffusers")
    record = ddss.export.timesteps_record(digits.load_learned_sampler())
    scheduler = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=record["num_train_timesteps"])
    scheduler.set_timesteps(timesteps=record["timesteps"])
    assert scheduler.timesteps.tolist() == record["timesteps"]


def test_a_wheel_carries_the_configs_and_every_shipped_file(tmp_path):
    """A non-editable install finds `--config=NAME`, the digits weights, the learned sampler and the
    shipped ceiling: every file under ddss/configs and ddss/models/assets is in the wheel."""
    import glob
    import os
    import shutil
    import zipfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = tmp_path / "src"
    shutil.copytree(os.path.join(root, "ddss"), src / "ddss", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md"):
        shutil.copy(os.path.join(root, name), src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "wheel"), str(src)], check=True, capture_output=True)
    names = set(zipfile.ZipFile(glob.glob(str(tmp_path / "wheel" / "*.whl"))[0]).namelist())
    shipped = [os.path.relpath(p, src).replace(os.sep, "/")
               for pattern in ("ddss/configs/*.py", "ddss/models/assets/**/*.*")
               for p in glob.glob(str(src / pattern), recursive=True)]
    assert len(shipped) > 25
    assert sorted(set(shipped) - names) == []


def test_times_that_merge_when_rounded_still_export(tmp_path):
    """A learned sampler whose times round to the same integer is saved; its JSON twin says there is
    no integer list instead of failing the export."""
    schedule = schedules.linear_beta()
    params = ddss.samplers.ggdm.init(schedule, np.asarray([2.4, 1.6]), family="ggdm", base="ddim")
    ddss.save_sampler(str(tmp_path / "s.safetensors"), params, clip_denoised=False)
    twin = json.loads((tmp_path / "s.timesteps.json").read_text())
    assert twin["timesteps"] is None and twin["exact_timesteps"] == pytest.approx([2.4, 1.6])
    assert ddss.load_sampler(str(tmp_path / "s.safetensors")).num_steps == 2


def test_plots_leave_the_callers_matplotlib_backend_alone(tmp_path):
    """Writing PNGs must not switch a notebook's backend (its inline figures would go blank)."""
    script = ("import matplotlib; matplotlib.use('svg'); from ddss.experiments import plots; from ddss import schedules; "
              f"plots.score_vs_k([{{'method': 'a', 'K': 3, 'fid': 2.0}}, {{'method': 'data', 'K': 0, 'fid': 1.0}}], "
              f"{str(tmp_path / 'a.png')!r}); "
              f"plots.timesteps([{{'method': 'a', 'K': 3, 'fid': 2.0, 'timesteps': [900, 500, 100]}}], "
              f"schedules.linear_beta(), ['ddim-linear'], {str(tmp_path / 'b.png')!r}); "
              "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "svg"
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "b.png").stat().st_size > 1000
