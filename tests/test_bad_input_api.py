"""Bad input through the API that is not a config value: traced timesteps, genomes, and work
directories that hold another run. Each ends in one clear error, and nothing on disk is lost."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import digest

from ddss import experiments, schedules
from ddss.configs import gmm_baselines_test, gmm_ddss_test
from ddss.samplers import ddim, ddpm, dpm_solver, ggdm, ipndm, raise_if_nonfinite, unipc
from ddss.search import evolution

SCHEDULE = schedules.linear_beta(1000)
EPS = lambda x, t: 0.1 * x  # noqa: E731 (a model function: any smooth map works here)

# Traced timesteps cannot be checked before sampling; the sampler reports them in SampleInfo, and
# raise_if_nonfinite (the host-side check every harness runs after sampling) refuses the samples.
BAD_TIMES = {
    "increasing": [100.0, 500.0, 900.0],
    "repeated": [900.0, 500.0, 500.0],
    "negative": [900.0, 500.0, -1.0],
    "above T-1": [1200.0, 500.0, 100.0],
    "nan": [900.0, np.nan, 100.0],
}
FAMILIES = {
    "ddim": lambda t: ddim.init(SCHEDULE, t),
    "ddpm": lambda t: ddpm.init(SCHEDULE, t),
    "dpm-solver++": lambda t: dpm_solver.init(SCHEDULE, t, order=2),
    "unipc": lambda t: unipc.init(SCHEDULE, t, order=2),
    "ipndm": lambda t: ipndm.init(SCHEDULE, t, order=2),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("times", sorted(BAD_TIMES))
def test_traced_bad_timesteps_are_reported_after_sampling(family, times):
    module = {"ddim": ddim, "ddpm": ddpm, "dpm-solver++": dpm_solver, "unipc": unipc, "ipndm": ipndm}[family]
    run = jax.jit(lambda t, x: module.sample(FAMILIES[family](t), EPS, x, jax.random.key(0), return_info=True))
    x = jnp.ones((2, 3))
    _, good = run(jnp.asarray([900.0, 500.0, 100.0]), x)
    raise_if_nonfinite(good)  # valid times pass
    _, info = run(jnp.asarray(BAD_TIMES[times]), x)  # the same compiled program: no recompilation, no host sync
    assert not bool(info.timesteps_ok)
    with pytest.raises(ValueError, match="invalid timesteps.*strictly decreasing.*traced"):
        raise_if_nonfinite(info)


def test_traced_bad_timesteps_under_vmap_name_how_many_runs():
    times = jnp.asarray([[900.0, 500.0, 100.0], [100.0, 500.0, 900.0], [900.0, 500.0, 100.0]])
    run = jax.vmap(lambda t: ddim.sample(ddim.init(SCHEDULE, t), EPS, jnp.ones((2, 3)), jax.random.key(0),
                                         return_info=True)[1])
    with pytest.raises(ValueError, match=r"in 1 of 3 vmapped runs"):
        raise_if_nonfinite(run(times))


def test_a_learned_ggdm_reports_its_own_times():
    params = ggdm.init(SCHEDULE, np.array([900.0, 500.0, 100.0]), family="ggdm+pred+time", base="ddim")
    _, info = ggdm.sample(params, EPS, jnp.ones((2, 3)), jax.random.key(0), return_info=True)
    assert bool(info.timesteps_ok)


@pytest.mark.parametrize("times, kwargs, message", [
    ([900, 500, 500], {}, "repeat a time"),
    ([900, 500, -3], {}, r"fall outside \[0, T − 1\]"),
    ([1200, 500, 3], {"num_timesteps": 1000}, r"fall outside \[0, 999\]"),
    ([900.5, 500, 3], {}, "must be integers"),
    ([900, np.nan, 3], {}, "must be integers"),
    ([], {}, "non-empty 1-D"),
    ([[900, 500]], {}, "non-empty 1-D"),
])
def test_bad_genomes_are_refused(times, kwargs, message):
    with pytest.raises(ValueError, match=message):
        evolution.make_genome(times, num_blocks=2, **kwargs)


def test_a_genome_keeps_distinct_times_in_range():
    genome = evolution.make_genome([3, 999, 500], num_blocks=2, num_timesteps=1000)
    assert genome.timesteps.tolist() == [999, 500, 3]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny baselines run."""
    workdir = tmp_path_factory.mktemp("finished")
    config = gmm_baselines_test.get_config()
    config.update(num_steps=(3,), methods=("ddim-quadratic",), reference_steps=10, num_samples=64)
    experiments.run(config, str(workdir))
    return workdir, config


@pytest.mark.parametrize("field, value, message", [
    ("gmm.seed", 1, r"different configuration \(gmm.seed: 0 → 1\)"),
    ("schedule", "cosine", r"different configuration \(schedule: \"linear\" → \"cosine\"\)"),
    ("num_timesteps", 500, r"different configuration \(num_timesteps: 1000 → 500\)"),
    ("eval_seed", 3, r"different configuration \(eval_seed: 0 → 3\)"),
    ("methods", ("ddim-linear",), r"different configuration \(methods: \[\"ddim-quadratic\"\] → \[\"ddim-linear\"\]\)"),
])
def test_a_changed_setting_is_refused_and_nothing_is_touched(finished, field, value, message):
    workdir, config = finished
    before = digest(workdir)
    changed = config.copy_and_resolve_references()
    *parents, leaf = field.split(".")
    node = changed
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ValueError, match=message + r".*new --workdir"):
        experiments.run(changed, str(workdir))
    assert digest(workdir) == before


def test_another_experiment_never_overwrites_results(finished):
    workdir, _ = finished
    before = digest(workdir)
    with pytest.raises(ValueError, match=r"holds a 'baselines' run; this is a 'ddss' run"):
        experiments.run(gmm_ddss_test.get_config(), str(workdir))
    assert digest(workdir) == before


def test_results_without_a_recorded_config_are_not_reused(finished, tmp_path):
    (tmp_path / "results.json").write_text((finished[0] / "results.json").read_text())
    with pytest.raises(ValueError, match="did not record its configuration"):
        experiments.run(finished[1], str(tmp_path))


def test_a_damaged_config_record_is_refused(finished, tmp_path):
    (tmp_path / "config.json").write_text('{"experiment": "baselines", "conf')
    with pytest.raises(ValueError, match=r"config.json is damaged"):
        experiments.run(finished[1], str(tmp_path))


def test_the_same_config_reuses_the_finished_run(finished):
    workdir, config = finished
    record = json.loads((workdir / "config.json").read_text())
    assert record["experiment"] == "baselines" and record["config"]["gmm"]["seed"] == 0
    again = experiments.run(config, str(workdir))
    assert again["rows"] == json.loads((workdir / "results.json").read_text())["rows"]


def test_a_two_dimensional_mixture_gets_a_picture_not_a_crash(tmp_path):
    config = gmm_baselines_test.get_config()
    config.gmm.event_shape = (2,)
    config.update(num_steps=(3,), methods=("ddim-quadratic",), reference_steps=10, num_samples=64)
    results = experiments.run(config, str(tmp_path))
    assert {r["method"] for r in results["rows"]} >= {"ddim-quadratic", "ddpm-10"}
    assert (tmp_path / "grids" / "ddim-quadratic_K3.png").stat().st_size > 0
