"""Scale-out on one machine: the cases of tests/multidevice_cases.py run in their own process with 8 CPU
devices (`--xla_force_host_platform_device_count=8`); the mesh module's own checks run here."""
import os
import subprocess
import sys

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
