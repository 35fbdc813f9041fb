"""Bad input through the command line, table-driven: every case ends with exit status 2 (a usage
mistake) or 1 (a failure), exactly one line on stderr that starts with `ddss: error:` and names the
problem, and no file in the work directory lost or overwritten.

The cases run the real entry point (`ddss.main.cli`, what the `ddss` console script calls) in real
processes: one interpreter imports ddss once, then forks a child per case (before JAX has started a
backend, so every child starts its own), which costs a fraction of a second instead of a fresh
interpreter's several seconds. Exit status and stderr are the child's own.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import digest

from ddss import experiments
from ddss.configs import gmm_baselines_test

# The finished run the workdir cases point at: gmm_baselines_test with these overrides.
FINISHED = ["--config=gmm_baselines_test", "--config.num_steps=(3,)", "--config.methods=('ddim-quadratic',)",
            "--config.reference_steps=10", "--config.num_samples=64"]
DDSS = ["--config=gmm_ddss_test"]
EVO = ["--config=gmm_evolution_test"]
W = "--workdir={new}"  # a fresh directory per case

# id: (arguments, exit status, fragment of the one line). {new}: a fresh work directory; {finished}: a
# finished baselines run; {tmp}: the case's scratch directory.
CASES = {
    # Usage mistakes: exit 2
    "unknown config": (["--config=nope", W], 2, "no shipped config named 'nope'"),
    "config typo": (["--config=digits_dds", W], 2, "Did you mean digits_ddss"),
    "config path missing": (["--config={tmp}/nothing.py", W], 2, "ddss --help"),
    "config raises": (["--config={tmp}/raises.py", W], 2, "bad config file on purpose"),
    "unknown field": (DDSS + [W, "--config.nonexistent=1"], 2, "the config has no field"),
    "unknown nested field": (DDSS + [W, "--config.train.stepz=1"], 2, "the config has no field"),
    "int field given text": (DDSS + [W, "--config.num_samples=abc"], 2, "--config.num_samples=abc"),
    "int field given float": (DDSS + [W, "--config.train.steps=2.5"], 2, "--config.train.steps=2.5"),
    "tuple field given junk": (DDSS + [W, "--config.num_steps=(3,"], 2, "--config.num_steps=(3,"),
    "no workdir": (DDSS, 2, "--workdir is required"),
    "no config": ([W], 2, "--config is required"),
    "stray argument": (DDSS + [W, "extra"], 2, "unexpected arguments ['extra']"),
    # Training values: exit 1, before any work
    "steps=0": (DDSS + [W, "--config.train.steps=0"], 1, "config.train.steps must be an integer ≥ 1, got 0"),
    "lr<0": (DDSS + [W, "--config.train.learning_rate=-1.0"], 1, "config.train.learning_rate must be a finite number > 0"),
    "lr nan": (DDSS + [W, "--config.train.learning_rate=nan"], 1, "config.train.learning_rate must be a finite number > 0"),
    "eval_every=0": (DDSS + [W, "--config.train.eval_every=0"], 1, "config.train.eval_every must be an integer ≥ 1"),
    "log_every=0": (DDSS + [W, "--config.train.log_every=0"], 1, "config.train.log_every must be an integer ≥ 1"),
    "batch=1": (DDSS + [W, "--config.train.batch_size=1"], 1, "config.train.batch_size must be an integer ≥ 2"),
    "grad_clip=0": (DDSS + [W, "--config.train.grad_clip=0.0"], 1, "config.train.grad_clip must be a finite number > 0"),
    "warmup>=steps": (DDSS + [W, "--config.train.warmup_steps=12"], 1, "must be below the step count"),
    "teacher_steps=0": (DDSS + [W, "--config.loss.teacher_steps=0"], 1, "config.loss.teacher_steps must be an integer ≥ 1"),
    "learn twice": (DDSS + [W, "--config.learn=(('ggdm','kid'),('ggdm','kid'))"], 1, "lists a (family, loss) pair twice"),
    "learn family": (DDSS + [W, "--config.learn=(('ggdm+fast','kid'),)"], 1, "Unknown sampler family 'ggdm+fast'"),
    "init stride": (DDSS + [W, "--config.init.stride=cubic"], 1, "Unknown init.stride 'cubic'"),
    "K twice": (DDSS + [W, "--config.num_steps=(3,3)"], 1, "config.num_steps lists 3 more than once"),
    "K>T": (DDSS + [W, "--config.num_steps=(2000,)"], 1, "K = 2000 exceeds the mixture's T = 1000"),
    "K=0": (DDSS + [W, "--config.num_steps=(0,)"], 1, "every item of config.num_steps must be an integer ≥ 1"),
    "reference_steps<0": (DDSS + [W, "--config.reference_steps=-1"], 1, "config.reference_steps must be an integer ≥ 0"),
    "seed<0": (DDSS + [W, "--config.seed=-1"], 1, "config.seed must be an integer ≥ 0"),
    "eval_seed big": (DDSS + [W, "--config.eval_seed=2000000"], 1, "config.eval_seed must lie in [0, 1048576)"),
    "schedule": (DDSS + [W, "--config.schedule=quadratic"], 1, "Unknown schedule 'quadratic'"),
    "method": (DDSS + [W, "--config.methods=('ddim-foo',)"], 1, "Unknown method 'ddim-foo'"),
    "model": (DDSS + [W, "--config.model=sd"], 1, "Unknown model 'sd'"),
    "components=0": (DDSS + [W, "--config.gmm.num_components=0"], 1, "config.gmm.num_components must be an integer ≥ 1"),
    "num_samples<2": (DDSS + [W, "--config.num_samples=-3"], 1, "config.num_samples must be an integer ≥ 2"),
    # Search values
    "chunk_size<0": (EVO + [W, "--config.chunk_size=-1"], 1, "config.chunk_size must be None or an integer ≥ 1, got -1"),
    "mutation_prob=2": (EVO + [W, "--config.search.mutation_prob=2.0"], 1, "config.search.mutation_prob must be"),
    "fitness_samples=1": (EVO + [W, "--config.fitness_samples=1"], 1, "config.fitness_samples must be an integer ≥ 2"),
    "population<parents": (EVO + [W, "--config.search.population=2"], 1, "smaller than the parent count"),
    "searches twice": (EVO + [W, "--config.searches=(('timesteps',3),('timesteps',3))"], 1, "lists a search twice"),
    "search sampler": (EVO + [W, "--config.sampler=euler"], 1, "Unknown sampler 'euler' for the search"),
    "evolved file as ggdm_sampler": (EVO + [W, "--config.sampler=ggdm", "--config.joint.free_steps=False",
                                            "--config.ggdm_sampler={tmp}/evolved.safetensors"], 1,
                                     "is a searched sampler export"),
    # Other experiments
    "unet steps=0": (["--config=digits_train", W, "--config.steps=0"], 1, "config.steps must be an integer ≥ 1, got 0"),
    "unet ema>1": (["--config=digits_train", W, "--config.ema_decay=1.5"], 1, "config.ema_decay must be a finite number"),
    "classifier epochs=0": (["--config=digits_classifier", W, "--config.epochs=0"], 1, "config.epochs must be an integer ≥ 1"),
    "ref_stats source": (["--config=ref_stats_digits", W, "--config.source=web"], 1, "Unknown source 'web'"),
    "ref_stats max<0": (["--config=ref_stats_digits", W, "--config.max_samples=-1"], 1, "config.max_samples must be None or an integer ≥ 1"),
    "ref_stats no folder": (["--config=ref_stats_folder", W], 1, "config.folder is not set"),
    "ref_stats missing folder": (["--config=ref_stats_folder", W, "--config.folder={tmp}/nothing"], 1, "does not exist"),
    "ref_stats empty folder": (["--config=ref_stats_folder", W, "--config.folder={tmp}"], 1, "No images"),
    "evaluate truncated export": (["--config={tmp}/evaluate.py", W,
                                   "--config.samplers=('{tmp}/truncated.safetensors',)"], 1, "is truncated"),
    "evaluate missing export": (["--config={tmp}/evaluate.py", W, "--config.samplers=('{tmp}/none.safetensors',)"],
                                1, "none.safetensors, which does not exist"),
    "evaluate unfinished run": (["--config={tmp}/evaluate.py", W, "--config.samplers=('{tmp}',)"], 1,
                                "holds no exported sampler"),
    # Work directories that hold another run: exit 1, nothing touched
    "changed mixture seed": (FINISHED + ["--workdir={finished}", "--config.gmm.seed=1"], 1,
                             "different configuration (gmm.seed: 0 → 1)"),
    "changed T": (FINISHED + ["--workdir={finished}", "--config.num_timesteps=500"], 1,
                  "different configuration (num_timesteps: 1000 → 500)"),
    "changed schedule": (FINISHED + ["--workdir={finished}", "--config.schedule=cosine"], 1,
                         'different configuration (schedule: "linear" → "cosine")'),
    "another experiment": (DDSS + ["--workdir={finished}"], 1, "holds a 'baselines' run; this is a 'ddss' run"),
    "workdir is a file": (DDSS + ["--workdir={tmp}/raises.py"], 1, "is a file, not a directory"),
}

EVALUATE_CONFIG = textwrap.dedent('''
    from ddss.configs import gmm_baselines_test

    def get_config():
        config = gmm_baselines_test.get_config()
        config.experiment = "evaluate"
        config.samplers = ("",)
        return config
''')

RUNNER = textwrap.dedent('''
    import io, json, os, sys
    from ddss import main
    import ddss.experiments.learn, ddss.experiments.evolution, ddss.experiments.evaluate  # shared by every child
    results = {}
    for case, args, cwd in json.load(sys.stdin):
        out_path = os.path.join(cwd, "stderr.txt")
        pid = os.fork()
        if pid == 0:
            os.chdir(cwd)
            fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 2)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), write_through=True)
            code = 0
            sys.argv = ["ddss", *args]  # as the console script sees them (config_flags reads sys.argv too)
            try:
                main.cli()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException as e:
                sys.stderr.write(f"UNCAUGHT {type(e).__name__}: {e}")
                code = 99
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        with open(out_path) as f:
            results[case] = [os.waitstatus_to_exitcode(status), f.read()]
    json.dump(results, sys.stdout)
''')


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Runs every case; returns {case: (exit status, stderr, workdir, digest before, digest after)}."""
    root = tmp_path_factory.mktemp("cli_cases")
    finished = root / "finished"
    from ml_collections import ConfigDict  # the finished run, through the API, with FINISHED's overrides
    config = gmm_baselines_test.get_config()
    config.update(num_steps=(3,), methods=("ddim-quadratic",), reference_steps=10, num_samples=64)
    experiments.run(ConfigDict(config), str(finished))
    scratch = {}
    jobs = []
    for i, (case, (args, _, _)) in enumerate(sorted(CASES.items())):
        tmp = root / f"case{i}"
        tmp.mkdir()
        (tmp / "raises.py").write_text("def get_config():\n    raise RuntimeError('bad config file on purpose')\n")
        (tmp / "evaluate.py").write_text(EVALUATE_CONFIG)
        _bad_exports(tmp)
        subs = {"new": str(tmp / "run"), "finished": str(finished), "tmp": str(tmp)}
        jobs.append((case, [a.format(**subs) for a in args], str(tmp)))
        scratch[case] = tmp
    before = digest(finished)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", RUNNER], input=json.dumps(jobs), capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    after = digest(finished)
    return {case: (*results[case], scratch[case] / "run", before, after) for case in CASES}


def _bad_exports(tmp):
    """An evolved export (valid, but not a GGDM one) and a truncated learned export in `tmp`."""
    import numpy as np
    from ddss import save_evolved_sampler, save_sampler, schedules
    from ddss.samplers import ggdm

    schedule = schedules.linear_beta(1000)
    save_evolved_sampler(str(tmp / "evolved.safetensors"), np.array([900, 500, 100]), np.zeros((3, 2), bool),
                         kind="ddim", schedule=schedule, clip_denoised=False)
    params = ggdm.init(schedule, np.array([900.0, 500.0, 100.0]), family="ggdm+pred+time", base="ddim")
    path = tmp / "truncated.safetensors"
    save_sampler(str(path), params, clip_denoised=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_the_table_is_big_and_names_both_statuses():
    assert len(CASES) >= 55
    assert {status for _, status, _ in CASES.values()} == {1, 2}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_one_line_and_loses_nothing(outcomes, case):
    _, status, fragment = CASES[case]
    code, stderr, workdir, before, after = outcomes[case]
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert code == status, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("ddss: error: "), stderr[-2000:]
    assert fragment in lines[0], lines[0]
    assert after == before  # the finished run: not a byte changed, by any case
    if workdir.exists():  # a fresh work directory: nothing in it but the configuration record
        assert set(digest(workdir)) <= {"config.json"}, sorted(digest(workdir))


def test_the_finished_run_is_still_reused_by_the_same_command(outcomes, tmp_path):
    """After every refusal above, the same configuration still finds its finished run."""
    finished = outcomes["changed T"][2].parent.parent / "finished"
    results = json.loads((finished / "results.json").read_text())
    config = gmm_baselines_test.get_config()
    config.update(num_steps=(3,), methods=("ddim-quadratic",), reference_steps=10, num_samples=64)
    timeless = lambda rows: [{k: v for k, v in r.items() if k != "wall_time_s"} for r in rows]  # noqa: E731
    assert timeless(experiments.run(config, str(finished))["rows"]) == timeless(results["rows"])
