"""Scale-out on one machine: the cases of tests/multidevice_cases.py run in their own process with 8 CPU
devices (`--xla_force_host_platform_device_count=8`); the mesh module's own checks run here."""
import os
import subprocess
import sys

import numpy as np
import pytest

from ddss import parallel

HERE = os.path.dirname(os.path.abspath(__file__))


def test_on_eight_devices():
    env = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                                       " --xla_force_host_platform_device_count=8").strip(),
           "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-o",
                          "addopts=", os.path.join(HERE, "multidevice_cases.py")],
                         env=env, capture_output=True, text=True, cwd=HERE)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-3000:]
    assert " passed" in out.stdout and "skipped" not in out.stdout


def test_mesh_config_is_checked():
    with pytest.raises(ValueError, match="config.mesh.data must be a positive number of devices"):
        parallel.MeshConfig.from_config({"data": 0})
    with pytest.raises(ValueError, match="config.mesh.pipeline is not a mesh axis"):
        parallel.MeshConfig.from_config({"pipeline": 2})
    mesh = parallel.make_mesh()
    assert dict(mesh.shape) == {"data": len(mesh.devices.flat), "population": 1}


def _processes(root, stages, n):
    """Runs tests/multihost_worker.py in `n` processes joined by jax.distributed on localhost (CPU, gloo
    collectives), or in one plain process for n = 1; returns each process's JSON line."""
    import json
    import socket

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    envs = [env]
    if n > 1:
        with socket.socket() as s:
            s.bind(("localhost", 0))
            port = s.getsockname()[1]
        envs = [{**env, "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": str(n),
                 "JAX_PROCESS_ID": str(i)} for i in range(n)]
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "multihost_worker.py"), str(root), *stages],
                              env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE) for e in envs]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def _rows(workdir):
    import json

    return [{k: r[k] for k in ("method", "K", "fid", "precision", "recall", "kid")}
            for r in json.loads((workdir / "results.json").read_text())["rows"]]


def _logged_steps(path):
    import json

    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_two_hosts_run_the_experiments_like_one(tmp_path):
    """Reference statistics, DDSS and the search, in 2 processes of one device each joined by
    jax.distributed, write what 1 process writes: each host reads its own rows, only process 0 writes,
    and a run whose last checkpoint is lost resumes (orbax's multi-host restore) to the same results."""
    stages = ("ref_stats", "ddss", "evolution")
    one = _processes(tmp_path / "one", stages, 1)[0]
    two = _processes(tmp_path / "two", stages, 2)
    assert one["devices"] == 1 and not one["distributed"]
    assert [r["process"] for r in two] == [0, 1] and all(r["devices"] == 2 and r["distributed"] for r in two)
    assert one["read"] == [[0, 8]] and [r["read"] for r in two] == [[[0, 4]], [[4, 8]]]  # each host its own rows
    assert all(r["gathered"] == list(range(8)) and r["training_batch_is_the_global_batch"] for r in two + [one])

    ref_one, ref_two = (np.load(tmp_path / w / "ref_stats" / "stats.npz") for w in ("one", "two"))
    np.testing.assert_allclose(ref_two["mu"], ref_one["mu"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ref_two["sigma"], ref_one["sigma"], rtol=1e-6, atol=1e-9)
    for name in ("ddss", "evolution"):
        a, b = _rows(tmp_path / "one" / name), _rows(tmp_path / "two" / name)
        assert [r["method"] for r in a] == [r["method"] for r in b]
        for x, y in zip(a, b):
            for k in ("fid", "precision", "recall", "kid"):
                assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-5), (name, x["method"], k)
    run = tmp_path / "two" / "ddss" / "runs" / "ggdm+pred+time_K3"
    steps = _logged_steps(run / "metrics.jsonl")
    assert steps == sorted(set(steps)) == _logged_steps(tmp_path / "one" / "ddss" / "runs" / run.name / "metrics.jsonl")

    # Lose the last checkpoint and everything after it: the 2 processes resume from step 9.
    import shutil

    last = max(int(d) for d in os.listdir(run / "checkpoints") if d.isdigit())
    shutil.rmtree(run / "checkpoints" / str(last))
    for f in ("training.json", "sampler.safetensors", "sampler.timesteps.json"):
        (run / f).unlink()
    before = _rows(tmp_path / "two" / "ddss")
    (tmp_path / "two" / "ddss" / "results.json").unlink()
    _processes(tmp_path / "two", ("ddss",), 2)
    assert _rows(tmp_path / "two" / "ddss") == before
    assert _logged_steps(run / "metrics.jsonl") == steps and (run / "checkpoints" / str(last)).is_dir()


def test_metrics_trace_their_matmuls_at_float32_precision():
    """TPUs run float32 dots as bf16 passes unless asked: the feature networks and KID's kernels ask
    (precision HIGHEST in the lowered program), a plain dot does not."""
    import jax
    import jax.numpy as jnp

    from ddss.metrics import features, kid

    x = jnp.ones((4, 3))
    assert "HIGHEST" in jax.jit(kid.mmd2).lower(x, x).as_text()
    extractor = features.get("digits")
    assert "HIGHEST" in jax.jit(extractor.apply).lower(extractor.params, jnp.zeros((2, 8, 8, 1))).as_text()
    assert "HIGHEST" not in jax.jit(lambda a, b: a @ b.T).lower(x, x).as_text()
