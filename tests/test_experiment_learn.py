"""The DDSS experiment on the tiny Gaussian-mixture config: results contract, learning, exact resume
after a kill, the NaN guard, exports, and one clear error per bad input."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddss.configs import gmm_ddss_test
from ddss import experiments, load_sampler, save_sampler, schedules
from ddss.experiments import learn as learn_exp
from ddss.models import params_io
from ddss.samplers import ggdm


def _config(baselines=True, **train):
    config = gmm_ddss_test.get_config()
    config.train.update(**train)
    if not baselines:  # only the learned row and the ceiling: faster for tests about training
        config.methods = ()
    return config


def _whole_config():
    # K = 3 trains at its own learning rate (the tiny config's 1e-3); the general one would send it to NaN.
    return _config(learning_rate=50.0, learning_rate_by_k=((3, 1e-3),))


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("whole")
    return workdir, experiments.run(_whole_config(), str(workdir))


def test_results_contract_and_training_record(whole_run):
    workdir, results = whole_run
    rows = {(r["method"], r["K"]): r for r in json.loads((workdir / "results.json").read_text())["rows"]}
    assert set(rows) == {("ggdm+pred+time", 3), ("ddim-quadratic", 3), ("ddpm-10", 10), ("data", 0)}
    learned = rows[("ggdm+pred+time", 3)]
    assert learned["heldout"] is True and learned["n_samples"] == 64 and learned["nfe"] == 3
    training = learned["training"]
    assert training["steps"] == 12 and training["wall_time_s"] > 0 and training["device"]
    assert training["learning_rate"] == 1e-3
    assert training["network_evaluations"] == {"forward": 2 * 3 * 32 * 12 + 3 * 64 * 3, "backward": 3 * 32 * 12,
                                               "teacher_forward": 0}
    assert np.all(np.diff(learned["timesteps"]) < 0) and len(learned["timesteps"]) == 3
    images = np.load(workdir / "samples" / "ggdm+pred+time_K3.npz")["images"]
    assert images.shape == (64, 4, 4, 1) and images.dtype == np.float32
    for name in ("fid_vs_k.png", "timesteps.png", "grids/ggdm+pred+time_K3.png"):
        assert (workdir / name).exists()
    metrics = [json.loads(line) for line in (workdir / "runs" / "ggdm+pred+time_K3" / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics if "val_fid" in m] == [0, 6, 12]


def test_learning_moves_the_sampler_and_the_export_reproduces_the_scored_samples(whole_run):
    workdir, _ = whole_run
    sampler = load_sampler(str(workdir / "runs" / "ggdm+pred+time_K3" / "sampler.safetensors"),
                           family="ggdm+pred+time", num_steps=3)
    init = ggdm.init(sampler.params.schedule, schedules.timesteps(sampler.params.schedule, "logsnr", 3),
                     family="ggdm+pred+time", base="dpm_solver++")
    assert any(not np.allclose(sampler.params.learned[k], init.learned[k]) for k in init.learned)
    record = json.loads((workdir / "runs" / "ggdm+pred+time_K3" / "training.json").read_text())
    assert sampler.metadata["info"]["best_val_fid"] == record["best_val_fid"]


def _held_out_fid_of_the_initial_sampler(workdir, config):
    """The held-out evaluation FID of the K = 3 sampler training started from (DPM-Solver++(2M), λ-uniform)."""
    from ddss.experiments import evaluation

    cfg = learn_exp.DDSSConfig.from_config(config)
    target, noise_bank, key = evaluation.setup(cfg.base, str(workdir / "init"))
    init = ggdm.init(target.schedule, schedules.timesteps(target.schedule, "logsnr", 3), family="ggdm+pred+time",
                     base="dpm_solver++")
    fn = jax.jit(lambda p, x, k: ggdm.sample(p, lambda x_, t_: target.apply({}, x_, t_), x, k, return_info=True))
    samples = evaluation.sample_in_batches(fn, init, noise_bank, key, cfg.base.batch_size)
    return target.score(samples)["fid"]


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_learning_improves_the_held_out_score_and_a_flipped_gradient_does_not(tmp_path, monkeypatch, sign):
    """Descending the default objective (the pixel teacher) must beat the starting solver on held-out
    noise and on the validation bank; the same run ascending it (a flipped gradient sign) must not: so
    this test can fail."""
    import optax
    from ddss.search import differentiable

    make = differentiable.make_optimizer
    monkeypatch.setattr(differentiable, "make_optimizer", lambda *a, **k: optax.chain(optax.scale(sign), make(*a, **k)))
    config = _config(baselines=False)
    config.learn = (("ggdm+pred+time", "teacher"),)
    config.loss.update(teacher_space="pixels", teacher_steps=20, teacher_pairs=256)
    results = experiments.run(config, str(tmp_path))
    learned = results["rows"][0]
    metrics = [json.loads(line) for line in (tmp_path / "runs" / "ggdm+pred+time-teacher_K3" / "metrics.jsonl").open()]
    val = {m["step"]: m["val_fid"] for m in metrics if "val_fid" in m}
    initial = _held_out_fid_of_the_initial_sampler(tmp_path, config)
    improved = learned["training"]["best_val_fid"] < 0.8 * val[0] and learned["fid"] < 0.8 * initial
    assert improved == (sign > 0), (val, learned["fid"], initial)


def _wrap_training_steps(patch, wrap):
    """Makes every Trainer's jitted step `wrap(step, call_number, *args)` (call numbers from 1)."""
    original_init = learn_exp.Trainer.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        step, calls = self.step, []

        def wrapped(*a):
            calls.append(1)
            return wrap(step, len(calls), *a)

        self.step = wrapped

    patch.setattr(learn_exp.Trainer, "__init__", init)


def _die_at_call_8(step, n, *args):
    if n == 8:  # checkpoints after steps 3 and 6; step 7 is lost
        raise KeyboardInterrupt
    return step(*args)


def test_resume_after_a_kill_equals_an_uninterrupted_run(whole_run, tmp_path, monkeypatch):
    workdir, results = whole_run
    killed = tmp_path / "killed"
    with monkeypatch.context() as patch:
        _wrap_training_steps(patch, _die_at_call_8)
        with pytest.raises(KeyboardInterrupt):
            experiments.run(_config(baselines=False), str(killed))
    assert not (killed / "runs" / "ggdm+pred+time_K3" / "sampler.safetensors").exists()
    resumed = experiments.run(_config(baselines=False), str(killed))
    a = load_sampler(str(workdir / "runs" / "ggdm+pred+time_K3" / "sampler.safetensors"))
    b = load_sampler(str(killed / "runs" / "ggdm+pred+time_K3" / "sampler.safetensors"))
    for name in a.params.learned:
        np.testing.assert_array_equal(a.params.learned[name], b.params.learned[name])
    assert resumed["rows"][0]["fid"] == results["rows"][0]["fid"]
    # A finished run is not retrained, and is not mistaken for a differently configured one.
    again = experiments.run(_config(baselines=False), str(killed))
    assert again["rows"][0]["training"] == resumed["rows"][0]["training"]
    with pytest.raises(ValueError, match="different configuration \\(train.learning_rate: [0-9.e-]+ → 0.5\\)"):
        experiments.run(_config(baselines=False, learning_rate=0.5), str(killed))


def test_a_non_finite_step_is_refused(tmp_path):
    import optax
    from ddss.search import differentiable

    learned = {"w": np.ones(3, np.float32)}
    loss = lambda l, mp, x, key, real, target=None: (jnp.sum(l["w"] * x.mean()), {"kid": jnp.sum(l["w"])})
    for lr, finite in ((0.1, True), (float("nan"), False)):
        optimizer = optax.adam(lr)
        state = differentiable.init_state(learned, optimizer, jax.random.key(0))
        new, metrics = jax.jit(differentiable.make_step(loss, optimizer, (4, 2), 5, 3))(state, {}, jnp.zeros((5, 2)))
        assert int(new.step) == 1 and float(metrics["nonfinite"]) == (0.0 if finite else 1.0)
        assert np.array_equal(np.asarray(new.learned["w"]), learned["w"]) != finite
    # A loss without KID takes no real data: the step passes it None, and the update is the same.
    seen = []
    no_real = lambda l, mp, x, key, real, target=None: (seen.append(real) or jnp.sum(l["w"] * x.mean()), {})
    optimizer = optax.adam(0.1)
    state = differentiable.init_state(learned, optimizer, jax.random.key(0))
    a = jax.jit(differentiable.make_step(no_real, optimizer, (4, 2)))(state, {}, None)[0]
    b = jax.jit(differentiable.make_step(loss, optimizer, (4, 2), 5, 3))(state, {}, jnp.zeros((5, 2)))[0]
    assert seen == [None] and np.array_equal(np.asarray(a.learned["w"]), np.asarray(b.learned["w"]))


def test_nan_guard_stops_and_names_the_last_good_checkpoint(tmp_path, monkeypatch):
    def bad_fifth_step(step, n, *args):
        state, metrics = step(*args)
        return state, {**metrics, "nonfinite": metrics["nonfinite"] + (n == 5)}

    _wrap_training_steps(monkeypatch, bad_fifth_step)
    with pytest.raises(FloatingPointError, match="between 4 and 6 .*last good checkpoint is step 3 in .*checkpoints"):
        experiments.run(_config(False, log_every=2, checkpoint_every=3, eval_every=12), str(tmp_path))


def test_teacher_loss_runs_and_is_reported(tmp_path):
    config = _config(False, steps=2, eval_every=2, checkpoint_every=2)
    config.learn = (("ggdm", "kid+teacher"),)
    config.loss.teacher_steps = 8
    row = experiments.run(config, str(tmp_path))["rows"][0]
    assert row["method"] == "ggdm-kid+teacher" and row["loss"] == "kid+teacher"
    assert row["training"]["network_evaluations"]["teacher_forward"] == 8 * 32 * 2
    lines = (tmp_path / "runs" / "ggdm-kid+teacher_K3" / "metrics.jsonl").read_text().splitlines()
    metrics = [m for m in map(json.loads, lines) if "loss" in m][0]
    assert metrics["loss"] == pytest.approx(metrics["kid"] + metrics["teacher"], rel=1e-5)


def test_teacher_validation_is_the_distance_to_the_teacher_on_held_out_noise(tmp_path):
    """validation = "teacher" scores a sampler by its mean squared distance to the teacher's solutions of
    the validation bank: checked against DPM-Solver++ run directly (the GGDM start is DPM-Solver++(2M) on
    the λ-uniform grid, the teacher the same solver at 8 steps), then through a whole run."""
    from ddss.experiments import evaluation
    from ddss.samplers import dpm_solver

    config = _config(False, steps=4, eval_every=2, checkpoint_every=2, validation="teacher")
    config.learn = (("ggdm+pred+time", "teacher"),)
    config.loss.update(kind="teacher", teacher_space="pixels", teacher_steps=8)
    cfg = learn_exp.DDSSConfig.from_config(config)
    target, _, _ = evaluation.setup(cfg.base, str(tmp_path / "setup"))
    trainer = learn_exp.Trainer(cfg, target, learn_exp._extractor(cfg), None, "ggdm+pred+time", "teacher", 3,
                                jax.random.key(0))
    schedule, bank = target.schedule, trainer.val_bank
    eps = lambda x, t: target.apply(target.params, x, t, None)
    solve = lambda times: np.clip(np.asarray(dpm_solver.sample(dpm_solver.init(schedule, times, order=2), eps, bank,
                                                               jax.random.key(1))), -1.0, 1.0)
    start = trainer.generate(trainer.init_params.learned, bank, trainer.k_val_sampler, 64)
    # The start is DPM-Solver++(2M) at the GGDM's own times (the λ-uniform grid, through +TIME's parametrisation).
    np.testing.assert_allclose(start, solve(np.asarray(trainer.init_params.timesteps)), rtol=1e-4, atol=1e-4)
    expected = np.mean((np.clip(start, -1.0, 1.0) - solve(schedules.timesteps(schedule, "logsnr", 8))
                        ).astype(np.float64) ** 2)
    assert trainer.validate(trainer.init_params.learned) == pytest.approx(expected, rel=1e-5)
    assert expected > 0

    row = experiments.run(config, str(tmp_path / "run"))["rows"][0]
    rundir = tmp_path / "run" / "runs" / "ggdm+pred+time-teacher_K3"
    metrics = [json.loads(line) for line in (rundir / "metrics.jsonl").open()]
    val = {m["step"]: m["val_teacher"] for m in metrics if "val_teacher" in m}
    assert sorted(val) == [0, 2, 4] and not any("val_fid" in m for m in metrics)
    record = json.loads((rundir / "training.json").read_text())
    assert record["validation"] == "teacher" and record["best_val_teacher"] == pytest.approx(min(val.values()))
    assert row["training"]["best_val_teacher"] == record["best_val_teacher"]
    # The teacher solves the training pairs' bank once and the validation bank once.
    assert record["network_evaluations"]["teacher_forward"] == 8 * 32 * 4 + 8 * 64
    assert "validation_note" not in record


def test_teacher_validation_falls_back_to_fid_when_the_teacher_is_no_better_than_the_start(tmp_path):
    """A 2-step teacher for a 3-step start: closeness to it is no measure of quality, so the run
    validates by the train-space FID and says so."""
    config = _config(False, steps=2, eval_every=2, checkpoint_every=2, validation="teacher")
    config.learn = (("ggdm+pred+time", "teacher"),)
    config.loss.update(kind="teacher", teacher_space="pixels", teacher_steps=2)
    row = experiments.run(config, str(tmp_path))["rows"][0]
    rundir = tmp_path / "runs" / "ggdm+pred+time-teacher_K3"
    record = json.loads((rundir / "training.json").read_text())
    assert record["validation"] == "fid" and "best_val_fid" in record and "best_val_teacher" not in record
    assert "at or below the teacher's" in record["validation_note"]
    assert row["training"]["validation_note"] == record["validation_note"]
    metrics = [json.loads(line) for line in (rundir / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics if "val_fid" in m] == [0, 2]


def test_teacher_validation_needs_a_teacher_loss(tmp_path):
    config = _config(validation="teacher")  # the tiny config's loss is KID
    with pytest.raises(ValueError, match="ggdm\\+pred\\+time/kid has no teacher loss: use validation = 'fid'"):
        experiments.run(config, str(tmp_path))
    with pytest.raises(ValueError, match="config.train.validation must be one of"):
        experiments.run(_config(validation="kid"), str(tmp_path))


@pytest.mark.parametrize("field,value,error,match", [
    ("num_steps", (2000,), ValueError, "K = 2000 exceeds the mixture's T = 1000"),
    ("learn", (("ggdm+fast", "kid"),), ValueError, "Unknown sampler family 'ggdm\\+fast'"),
    ("learn", (("ggdm", "lpips"),), ValueError, "Unknown DDSS loss 'lpips'"),
    ("reference_features", "/nonexistent/features.npy", FileNotFoundError, "save_features=True"),
])
def test_bad_config_gives_one_clear_error(tmp_path, field, value, error, match):
    config = _config()
    config[field] = value
    with pytest.raises(error, match=match):
        experiments.run(config, str(tmp_path))


def test_export_round_trip_is_bitwise_and_mismatches_are_refused(tmp_path):
    schedule = schedules.linear_beta()
    params = ggdm.init(schedule, schedules.timesteps(schedule, "quadratic", 4), family="ggdm+pred+time", eta=0.3)
    rng = np.random.default_rng(0)
    params = params.replace(learned={k: v + 0.01 * rng.standard_normal(v.shape).astype(np.float32)
                                     for k, v in params.learned.items()})
    path = str(tmp_path / "s.safetensors")
    save_sampler(path, params, clip_denoised=True, info={"note": "test"})
    loaded = load_sampler(path, family="ggdm+pred+time", num_steps=4)
    eps = lambda x, t: 0.1 * x + 1e-4 * t[:, None]
    x, key = jax.random.normal(jax.random.key(0), (8, 5)), jax.random.key(1)
    want = jax.jit(lambda x_, k_: ggdm.sample(params, eps, x_, k_, clip_denoised=True))(x, key)
    got = jax.jit(lambda x_, k_: loaded.sample(eps, x_, k_))(x, key)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert loaded.metadata["info"] == {"note": "test"} and loaded.clip_denoised is True

    with pytest.raises(ValueError, match="K = 4 sampler, not K = 5"):
        load_sampler(path, num_steps=5)
    with pytest.raises(ValueError, match="ggdm\\+pred\\+time sampler, not vars"):
        load_sampler(path, family="vars")
    bad = params.replace(learned={**params.learned, "mu": params.learned["mu"] * np.nan})
    tensors = {"learned": {k: np.asarray(v) for k, v in bad.learned.items()}, "base_times": bad.base_times,
               "schedule": {"log_alpha_bar_table": np.asarray(schedule.log_alpha_bar_table)}}
    _, meta = params_io.load(path)
    params_io.save(str(tmp_path / "nan.safetensors"), tensors, meta)
    with pytest.raises(FloatingPointError, match="nan.safetensors.*NaN or inf"):
        load_sampler(str(tmp_path / "nan.safetensors"))
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(params_io.WeightFileError, match="corrupt"):
        load_sampler(str(tmp_path / "corrupt.safetensors"))
    with pytest.raises(params_io.WeightFileError, match="not found"):
        load_sampler(str(tmp_path / "missing.safetensors"))


def test_evaluate_scores_an_export_as_the_run_did(whole_run, tmp_path):
    """The `evaluate` experiment re-scores an exported sampler on the same held-out bank: the same row."""
    workdir, results = whole_run
    learned = next(r for r in results["rows"] if r["method"] == "ggdm+pred+time")
    config = _config()
    for key in ("learn", "init", "train", "loss", "reference_features"):
        del config[key]
    config.experiment = "evaluate"
    config.samplers = (str(workdir / learned["export"]),)
    config.num_steps = ()
    config.methods = ("ddim-quadratic",)
    rows = experiments.run(config, str(tmp_path))["rows"]
    assert [(r["method"], r["K"]) for r in rows] == [("ggdm+pred+time", 3), ("ddim-quadratic", 3), ("ddpm-10", 10),
                                                    ("data", 0)]
    assert rows[0]["fid"] == learned["fid"] and rows[0]["timesteps"] == learned["timesteps"]
    assert rows[0]["best_training_free"]["method"] == "ddim-quadratic"
    config.samplers = (str(tmp_path / "missing.safetensors"),)
    with pytest.raises(FileNotFoundError, match="missing.safetensors, which does not exist"):
        experiments.run(config, str(tmp_path / "b"))


def test_search_then_learn_starts_ddss_at_the_searched_sampler(tmp_path):
    """Evolution, then gradient: the @searched run starts from the searched timesteps and the search's
    own solver (its step-0 validation equals the searched sampler's), beside both parents."""
    from ddss.configs import gmm_search_then_learn_test
    from ddss.experiments import evaluation
    from ddss.experiments import evolution as evo_exp

    config = gmm_search_then_learn_test.get_config()
    config.ddss.train.update(steps=6, eval_every=6, checkpoint_every=6)
    results = experiments.run(config, str(tmp_path))
    rows = {r["method"]: r for r in results["rows"]}
    assert {"evolution-timesteps", "ggdm+pred+time", "ggdm+pred+time@searched", "ddim-quadratic"} <= set(rows)
    searched = load_sampler(str(tmp_path / rows["evolution-timesteps"]["export"]), num_blocks=0)
    assert rows["ggdm+pred+time@searched"]["init"]["base"] == "ddim"
    # The starting GGDM is the searched DDIM sampler itself: same samples from the same noise.
    _, ddss_cfg = __import__("ddss.experiments.search_then_learn", fromlist=["configs"]).configs(config)
    cfg = ddss_cfg.base
    target, noise_bank, key = evaluation.setup(cfg, str(tmp_path / "again"))
    want, _ = evo_exp.score_sampler(searched, target, noise_bank, key, cfg.batch_size)
    start = ggdm.init(target.schedule, np.asarray(searched.timesteps, np.float64), family="ggdm+pred+time",
                      base="ddim")
    fn = jax.jit(lambda p, x, k: ggdm.sample(p, lambda x_, t_: target.apply({}, x_, t_), x, k, return_info=True))
    got = evaluation.sample_in_batches(fn, start, noise_bank, key, cfg.batch_size)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    run = json.loads((tmp_path / "runs" / "ggdm+pred+time@searched_K3" / "run.json").read_text())
    assert run["init"]["timesteps_from"][0][1].endswith("evolution-timesteps_B3/sampler.safetensors")


def _copy_run(whole_run, tmp_path):
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(whole_run[0], workdir)
    return workdir


def _timeless(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_time_s", "training")} for r in rows]


def test_a_damaged_export_in_a_finished_run_is_written_again_from_its_checkpoint(whole_run, tmp_path, capfd):
    workdir = _copy_run(whole_run, tmp_path)
    export = workdir / "runs" / "ggdm+pred+time_K3" / "sampler.safetensors"
    original = export.read_bytes()
    export.write_bytes(original[: len(original) // 2])  # truncated, as by a full disk
    results = experiments.run(_whole_config(), str(workdir))
    assert "is damaged" in capfd.readouterr().err
    assert export.read_bytes() == original  # byte-identical: no wall time in the file, sorted header
    assert _timeless(results["rows"]) == _timeless(whole_run[1]["rows"])


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(whole_run, tmp_path, capfd):
    workdir = _copy_run(whole_run, tmp_path)
    rundir = workdir / "runs" / "ggdm+pred+time_K3"
    original = (rundir / "sampler.safetensors").read_bytes()
    steps_before = [json.loads(line)["step"] for line in (rundir / "metrics.jsonl").open()]
    assert sorted(int(p.name) for p in (rundir / "checkpoints").iterdir() if p.name.isdigit()) == [9, 12]
    for name in ("sampler.safetensors", "training.json"):  # killed after saving step 12, before exporting
        (rundir / name).unlink()
    for path in (rundir / "checkpoints" / "12").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00damaged" * 4)
    results = experiments.run(_whole_config(), str(workdir))
    err = capfd.readouterr().err
    assert "checkpoint 12" in err and "damaged" in err and "resuming from checkpoint 9" in err
    assert (workdir / "runs" / "damaged_checkpoints" / "12").is_dir() or (rundir / "damaged_checkpoints" / "12").is_dir()
    assert (rundir / "sampler.safetensors").read_bytes() == original  # steps 10-12 trained again, identically
    assert _timeless(results["rows"]) == _timeless(whole_run[1]["rows"])
    steps_after = [json.loads(line)["step"] for line in (rundir / "metrics.jsonl").open()]
    assert steps_after == steps_before  # the re-run steps replaced, not repeated


def test_when_no_checkpoint_restores_the_run_says_so_and_moves_nothing(whole_run, tmp_path):
    workdir = _copy_run(whole_run, tmp_path)
    rundir = workdir / "runs" / "ggdm+pred+time_K3"
    for name in ("sampler.safetensors", "training.json"):
        (rundir / name).unlink()
    for path in (rundir / "checkpoints").rglob("*"):
        if path.is_file():
            path.write_bytes(b"\x00damaged")
    with pytest.raises(ValueError, match="No checkpoint in .*checkpoints can be restored.*Delete that directory"):
        experiments.run(_whole_config(), str(workdir))
    assert sorted(p.name for p in (rundir / "checkpoints").iterdir() if p.name.isdigit()) == ["12", "9"]


def _digits_skips_config(tmp_path, searched):
    from ddss.configs import digits_ddss

    config = digits_ddss.get_config()
    config.update(num_steps=(2,), methods=(), reference_steps=0, num_samples=16, batch_size=16, ceiling_cache=None)
    config.learn = (("ggdm+pred", "teacher"),)
    config.init.update(base="ddim", timesteps_from=((2, str(searched)),), skips=True)
    config.train.update(steps=2, steps_by_k=(), batch_size=8, log_every=2, eval_every=2, checkpoint_every=2,
                        val_samples=16)
    config.loss.update(teacher_steps=4, teacher_pairs=16)
    return config


def test_ddss_keeps_a_searched_samplers_skip_sets(tmp_path):
    """init.skips: DDSS learns a GGDM+PRED from a searched DDIM sampler that skips blocks, keeping its
    skip sets. The start (blocks masked while learning) reproduces the searched sampler (blocks skipped
    statically) exactly; the export is a searched-format GGDM that skips the same blocks and
    reproduces the scored samples."""
    import dataclasses

    from ddss import export
    from ddss.experiments import evaluation
    from ddss.experiments import evolution as evo_exp

    probe = _digits_skips_config(tmp_path, tmp_path / "none")
    cfg = learn_exp.DDSSConfig.from_config(probe)
    target, noise_bank, key = evaluation.setup(cfg.base, str(tmp_path / "probe"))
    L = target.num_blocks
    skip = np.zeros((2, L), bool)
    skip[0, [1, L - 2]] = True
    skip[1, 3] = True
    path = tmp_path / "searched.safetensors"
    export.save_evolved_sampler(str(path), [900, 300], skip, kind="ddim", schedule=target.schedule,
                                clip_denoised=cfg.base.clip_denoised, model=evaluation.model_record(target))
    searched = load_sampler(str(path), num_blocks=L)
    config = _digits_skips_config(tmp_path, path)
    cfg = learn_exp.DDSSConfig.from_config(config)
    trainer = learn_exp.Trainer(cfg, target, None, None, "ggdm+pred", "teacher", 2, jax.random.PRNGKey(0))
    batch = noise_bank[:16]
    want = np.asarray(evo_exp.deployed_sample_fn(searched, target)(target.params, batch, key)[0])
    start = np.asarray(trainer.sample((trainer.init_params.learned, target.params), batch, key)[0])
    np.testing.assert_allclose(start, want, rtol=1e-4, atol=1e-4)
    full = np.asarray(evo_exp.deployed_sample_fn(dataclasses.replace(searched, skip=((),) * 2), target)(
        target.params, batch, key)[0])
    assert np.abs(full - want).max() > 1e-2  # the skipped blocks matter: the check above could fail

    rows = {r["method"]: r for r in experiments.run(config, str(tmp_path / "work"))["rows"]}
    row = rows["ggdm+pred-teacher"]
    assert row["skip"] == [[1, L - 2], [3]] and row["block_executions"] == 2 * L - 3 and row["sampler"] == "ggdm"
    assert row["init"]["skips"] is True and row["timesteps"] == [900.0, 300.0]
    learned = load_sampler(str(tmp_path / "work" / row["export"]), family="ggdm+pred", num_steps=2, num_blocks=L)
    assert isinstance(learned, export.EvolvedSampler) and learned.skip == searched.skip
    assert learned.ggdm_params.base == "ddim"
    moved = [k for k, v in learned.ggdm_params.learned.items()
             if not np.allclose(v, trainer.init_params.learned[k])]
    assert moved  # training moved the coefficients
    # The masked path (training, validation) and the deployed static one agree on the learned sampler too.
    scored = np.load(tmp_path / "work" / "samples" / "ggdm+pred-teacher_K2.npz")["images"]
    again = evaluation.sample_in_batches(trainer.sample, (learned.ggdm_params.learned, target.params), noise_bank,
                                         key, cfg.base.batch_size)
    np.testing.assert_allclose(again, scored, rtol=1e-4, atol=1e-4)


def test_skip_sets_need_a_family_with_fixed_times_and_a_searched_sampler(tmp_path):
    config = _digits_skips_config(tmp_path, tmp_path / "searched.safetensors")
    config.learn = (("ggdm+pred+time", "teacher"),)
    with pytest.raises(ValueError, match="ggdm\\+pred\\+time learns its times: use a family without \\+time"):
        experiments.run(config, str(tmp_path / "a"))
    config = _digits_skips_config(tmp_path, tmp_path / "searched.safetensors")
    config.init.timesteps_from = ()
    with pytest.raises(ValueError, match="timesteps_from names none for K = 2"):
        experiments.run(config, str(tmp_path / "b"))
    from ddss.configs import digits_search_then_learn_skips
    from ddss.experiments import search_then_learn

    evo, ddss_cfg = search_then_learn.configs(digits_search_then_learn_skips.get_config())
    assert evo.searches == (("joint", 4),) and ddss_cfg.init.skips
    config = digits_search_then_learn_skips.get_config()
    config.evolution.joint.free_steps = True
    with pytest.raises(ValueError, match="set config.evolution.joint.free_steps=False"):
        search_then_learn.configs(config)
