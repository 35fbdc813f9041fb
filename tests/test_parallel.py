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


def _worker(env):
    return subprocess.Popen([sys.executable, os.path.join(HERE, "distributed_worker.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)


def test_two_processes_agree_with_one():
    """jax.distributed on localhost (CPU, gloo collectives): a DDSS step and a statistics pass split over
    2 processes of one device each give the 1-process results."""
    import json
    import socket

    base = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    base.pop("XLA_FLAGS", None)
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [_worker({**base, "JAX_COORDINATOR_ADDRESS": f"localhost:{port}", "JAX_NUM_PROCESSES": "2",
                      "JAX_PROCESS_ID": str(i)}) for i in range(2)]
    single = _worker(base)
    outs = [p.communicate(timeout=300) for p in procs + [single]]
    for p, (out, err) in zip(procs + [single], outs):
        assert p.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    two, one = results[:2], results[2]
    assert [r["process"] for r in two] == [0, 1] and all(r["devices"] == 2 and r["distributed"] for r in two)
    assert one["devices"] == 1 and not one["distributed"]
    for r in two:
        np.testing.assert_allclose(r["mu"], one["mu"], rtol=1e-6, atol=1e-6)
        assert r["trace"] == pytest.approx(one["trace"], rel=1e-6)
        assert r["kid"] == pytest.approx(one["kid"], rel=1e-4, abs=1e-3)  # float32 sums in another order
        for k, v in one["learned"].items():
            np.testing.assert_allclose(r["learned"][k], v, rtol=1e-4, atol=1e-6)


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
