"""The evolution experiment on the tiny Gaussian-mixture config: results contract, search cost,
export, exact resume after a kill, and one clear error per bad input."""
import json

import numpy as np
import pytest

from ddss.configs import gmm_evolution_test
from ddss import experiments, load_sampler
from ddss.experiments import evolution as evo_exp
from ddss.metrics import fid


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("whole")
    return workdir, experiments.run(gmm_evolution_test.get_config(), str(workdir))


def test_evaluate_scores_a_finished_search_directory_as_the_run_did(whole_run, tmp_path):
    """`evaluate` given the run directory finds the searched export (and its timesteps JSON twin) and
    re-scores it on the same held-out bank: the same row."""
    workdir, results = whole_run
    searched = next(r for r in results["rows"] if r["method"] == "evolution-timesteps")
    twin = json.loads((workdir / "runs" / "evolution-timesteps_B3" / "sampler.timesteps.json").read_text())
    assert twin["timesteps"] == searched["timesteps"] and twin["skip"] == searched["skip"]
    config = gmm_evolution_test.get_config()
    for key in evo_exp.EVOLUTION_KEYS:
        if key in config:
            del config[key]
    config.experiment = "evaluate"
    config.samplers = (str(workdir),)
    config.num_steps = ()
    rows = experiments.run(config, str(tmp_path))["rows"]
    assert [(r["method"], r["K"]) for r in rows][:2] == [("evolution-timesteps", 3), ("ddim-linear", 3)]
    assert rows[0]["fid"] == searched["fid"] and rows[0]["skip"] == searched["skip"]
    config.samplers = (str(tmp_path / "empty"),)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no exported sampler"):
        experiments.run(config, str(tmp_path / "b"))


def test_results_contract_and_search_cost(whole_run):
    workdir, results = whole_run
    rows = {(r["method"], r["K"]): r for r in json.loads((workdir / "results.json").read_text())["rows"]}
    assert set(rows) == {("evolution-timesteps", 3), ("ddim-linear", 3), ("ddpm-10", 10), ("data", 0)}
    row = rows[("evolution-timesteps", 3)]
    assert row["heldout"] is True and row["n_samples"] == 64 and row["nfe"] == 3 and row["sampler"] == "ddim"
    assert row["block_executions"] == 0 and row["skip"] == [[], [], []]
    assert len(row["timesteps"]) == 3 and np.all(np.diff(row["timesteps"]) < 0)
    assert all(float(t).is_integer() for t in row["timesteps"])
    cost = row["search"]
    assert cost["generations"] == 4 and cost["wall_time_s"] > 0 and cost["device"]
    assert cost["candidates_evaluated"] == 8 * 4  # a population of new genomes every generation
    assert cost["network_evaluations"] == cost["candidates_evaluated"] * 3 * 64
    best = cost["best_fitness_by_generation"]
    assert len(best) == 4 and all(b2 <= b1 for b1, b2 in zip(best, best[1:]))
    assert row["search_fitness"] == pytest.approx(best[-1])
    # The search beats its own seed (DDIM-uniform) on held-out noise.
    assert row["fid"] < rows[("ddim-linear", 3)]["fid"]
    metrics = [json.loads(line) for line in (workdir / "runs" / "evolution-timesteps_B3" / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics] == [0, 1, 2, 3] and [m["best_fid"] for m in metrics] == pytest.approx(best)
    for name in ("search_progress.png", "timesteps.png", "fid_vs_k.png", "grids/evolution-timesteps_K3.png"):
        assert (workdir / name).exists()


def test_the_export_reproduces_the_scored_samples(whole_run):
    workdir, results = whole_run
    row = next(r for r in results["rows"] if r["method"] == "evolution-timesteps")
    sampler = load_sampler(str(workdir / row["export"]), num_blocks=0)
    assert sampler.timesteps.tolist() == row["timesteps"] and sampler.kind == "ddim"
    assert sampler.metadata["info"]["fitness"] == row["search_fitness"]
    # Re-sample the held-out bank through the export and the mixture's exact ε: the row's samples.
    cfg = evo_exp.EvolutionConfig.from_config(gmm_evolution_test.get_config())
    from ddss.experiments import evaluation
    target, noise_bank, key = evaluation.setup(cfg.base, str(workdir / "again"))
    samples, _ = evo_exp.score_sampler(sampler, target, noise_bank, key, cfg.base.batch_size)
    saved = np.load(workdir / "samples" / "evolution-timesteps_K3.npz")["images"]
    np.testing.assert_array_equal(samples, saved)
    assert fid.frechet_distance_of(target.eval_space.features(samples), *target.eval_space.reference_stats) == \
        pytest.approx(row["fid"])


def test_a_killed_search_resumes_to_the_same_result(whole_run, tmp_path, monkeypatch):
    workdir, results = whole_run
    calls = {"n": 0}
    real_call = evo_exp.Evaluator.__call__

    def dying(self, genomes, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # killed while scoring generation 2
            raise KeyboardInterrupt
        return real_call(self, genomes, **kwargs)

    monkeypatch.setattr(evo_exp.Evaluator, "__call__", dying)
    with pytest.raises(KeyboardInterrupt):
        experiments.run(gmm_evolution_test.get_config(), str(tmp_path))
    monkeypatch.setattr(evo_exp.Evaluator, "__call__", real_call)
    metrics = tmp_path / "runs" / "evolution-timesteps_B3" / "metrics.jsonl"
    assert len(metrics.read_text().splitlines()) == 2  # generations 0 and 1 were checkpointed
    resumed = experiments.run(gmm_evolution_test.get_config(), str(tmp_path))
    a = next(r for r in results["rows"] if r["method"] == "evolution-timesteps")
    b = next(r for r in resumed["rows"] if r["method"] == "evolution-timesteps")
    assert b["timesteps"] == a["timesteps"] and b["fid"] == a["fid"]
    assert b["search"]["best_fitness_by_generation"] == a["search"]["best_fitness_by_generation"]
    assert b["search"]["candidates_evaluated"] == a["search"]["candidates_evaluated"]
    # The whole memo matches, genome for genome, in evaluation order.
    load = lambda d: evo_exp.evolution.SearchState.from_arrays(_latest_arrays(d / "runs" / "evolution-timesteps_B3"))
    sa, sb = load(workdir), load(tmp_path)
    assert [g.fingerprint for g in sa.genomes] == [g.fingerprint for g in sb.genomes] and sa.fitness == sb.fitness


def _latest_arrays(rundir):
    import orbax.checkpoint as ocp

    with ocp.CheckpointManager(str(rundir / "checkpoints")) as mngr:
        return mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore())


def test_a_changed_config_is_refused_not_mixed_in(whole_run):
    workdir, _ = whole_run
    config = gmm_evolution_test.get_config()
    config.search.mutation_prob = 0.5
    with pytest.raises(ValueError, match="different configuration \\(search.mutation_prob: 0.25 → 0.5\\).*new --workdir"):
        experiments.run(config, str(workdir))


def test_bad_inputs_get_one_clear_error_each(tmp_path):
    config = gmm_evolution_test.get_config()
    config.search.population, config.search.parents = 2, 3
    with pytest.raises(ValueError, match="population \\(2\\) is smaller than the parent count \\(3\\)"):
        experiments.run(config, str(tmp_path / 'case1'))
    config = gmm_evolution_test.get_config()
    config.searches = (("timesteps", 1200),)
    with pytest.raises(ValueError, match="1200 steps, more than the mixture.s T = 1000"):
        experiments.run(config, str(tmp_path / 'case2'))
    assert not (tmp_path / "case2").exists()  # refused before any work
    config = gmm_evolution_test.get_config()
    config.searches = (("joint", 3),)
    with pytest.raises(ValueError, match="no skippable blocks.*searches=\\('timesteps',\\)"):
        experiments.run(config, str(tmp_path / 'case3'))
    config = gmm_evolution_test.get_config()
    config.sampler = "heun"
    with pytest.raises(ValueError, match="Unknown sampler 'heun'.*ddim"):
        experiments.run(config, str(tmp_path / 'case4'))


def test_an_export_for_another_network_is_refused(whole_run, tmp_path):
    from ddss import export, schedules

    path = str(tmp_path / "s.safetensors")
    export.save_evolved_sampler(path, [900, 500, 100], np.zeros((3, 18), bool), kind="ddim",
                                schedule=schedules.linear_beta(1000), clip_denoised=False)
    with pytest.raises(ValueError, match="searched for a network with 18 skippable blocks; this model has 12"):
        load_sampler(path, num_blocks=12)
    assert load_sampler(path, num_blocks=18).block_executions == 54
    # Saving sorts the steps, each skip row with its timestep.
    skip = np.zeros((3, 18), bool)
    skip[1, 4] = True  # belongs to t = 100
    export.save_evolved_sampler(path, [500, 100, 900], skip, kind="ddim", schedule=schedules.linear_beta(1000),
                                clip_denoised=False)
    loaded = load_sampler(path)
    assert loaded.timesteps.tolist() == [900, 500, 100] and loaded.skip == ((), (), (4,))
    # A file whose steps are out of order is refused on load.
    from ddss.models import params_io
    tensors, meta = params_io.load(path)
    tensors["timesteps"] = tensors["timesteps"][[1, 0, 2]]
    params_io.save(path, tensors, meta)
    with pytest.raises(params_io.WeightFileError, match="does not hold a valid searched sampler.*strictly decreasing"):
        load_sampler(path)


def test_candidates_sharded_over_two_devices_give_the_same_search(whole_run, tmp_path):
    """With two (host) devices the chunk axis is sharded over a mesh; every candidate's fitness, and
    so the whole search, is unchanged."""
    import subprocess
    import sys

    workdir, results = whole_run
    script = ("import json, sys; from ddss.configs import gmm_evolution_test; from ddss import experiments; "
              "import jax; assert jax.device_count() == 2; "
              f"r = experiments.run(gmm_evolution_test.get_config(), {str(tmp_path)!r}); "
              "print(json.dumps([x for x in r['rows'] if x['method'] == 'evolution-timesteps'][0]))")
    env = {**__import__("os").environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    sharded = json.loads(out.stdout.strip().splitlines()[-1])
    single = next(r for r in results["rows"] if r["method"] == "evolution-timesteps")
    assert sharded["search"]["num_devices"] == 2 and sharded["search"]["chunk_size"] % 2 == 0
    assert sharded["timesteps"] == single["timesteps"]
    np.testing.assert_allclose(sharded["search"]["best_fitness_by_generation"],
                               single["search"]["best_fitness_by_generation"], rtol=1e-5)


def test_searching_the_times_of_an_exported_ggdm_sampler(tmp_path):
    """sampler='ggdm' keeps an exported DDSS sampler's coefficients and searches its times; the winner's
    export carries them and reproduces the scored samples."""
    from ddss import save_sampler, schedules
    from ddss.experiments import evaluation
    from ddss.samplers import ggdm

    schedule = schedules.linear_beta(1000)
    params = ggdm.init(schedule, schedules.timesteps(schedule, "linear", 3), family="ggdm+pred", base="dpm_solver++")
    rng = np.random.default_rng(0)
    params = params.replace(learned={k: v + 0.02 * rng.normal(size=v.shape).astype(np.float32)
                                     for k, v in params.learned.items()})
    path = str(tmp_path / "ddss.safetensors")
    save_sampler(path, params, clip_denoised=False)
    config = gmm_evolution_test.get_config()
    config.sampler, config.ggdm_sampler = "ggdm", path
    results = experiments.run(config, str(tmp_path / "work"))
    row = next(r for r in results["rows"] if r["method"] == "evolution-timesteps")
    assert row["sampler"] == "ggdm" and np.isfinite(row["fid"])
    sampler = load_sampler(str(tmp_path / "work" / row["export"]), num_blocks=0)
    assert sampler.kind == "ggdm" and sampler.ggdm_params.family == "ggdm+pred"
    for k, v in params.learned.items():
        np.testing.assert_array_equal(sampler.ggdm_params.learned[k], v)
    cfg = evo_exp.EvolutionConfig.from_config(config)
    target, noise_bank, key = evaluation.setup(cfg.base, str(tmp_path / "again"))
    samples, _ = evo_exp.score_sampler(sampler, target, noise_bank, key, cfg.base.batch_size)
    np.testing.assert_array_equal(samples, np.load(tmp_path / "work" / "samples" / "evolution-timesteps_K3.npz")["images"])
    # A +TIME sampler learns its own times: searching them is refused.
    timed = ggdm.init(schedule, schedules.timesteps(schedule, "linear", 3), family="ggdm+time")
    save_sampler(path, timed, clip_denoised=False)
    with pytest.raises(ValueError, match="learns its own times.*without \\+time"):
        experiments.run(config, str(tmp_path / "work2"))
