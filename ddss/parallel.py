"""Devices: the one module that knows how many there are, and how work is laid out over them.

Every experiment runs on one `jax.sharding.Mesh` with two axes:

  data        batches are split along it: sampling, feature extraction, DDSS's KID batches (the loss
              is over the global batch: XLA gathers what the kernel needs), UNet training;
  population  the search's candidates are split along it first (then along `data` too: a chunk of
              candidates is split over every device, each candidate's fitness batch on one device).

`ddss --config=... --mesh_data=N --mesh_population=M` (or a `mesh` block in the config) chooses the
layout (the product must be the number of devices); by default every device is on `data`. The
command line enters the mesh with JAX's own `jax.set_mesh`, and the experiments read it back with
`current()`. A layout never changes a result beyond float rounding: noise and labels are drawn as
global arrays from the same keys whatever the device count (JAX's partitionable threefry), then
placed.

Across hosts (a TPU pod slice, several GPU hosts) every process runs the same program:
`initialize()` calls `jax.distributed.initialize()` first when the environment describes a
multi-host job (or `--distributed` asks for it); every process builds the same noise banks from the
same keys and contributes its own rows (`put_batch`, or `put_local_batch` for a per-host data
shard); `to_host` gathers results onto every process; `is_main_process()` names the one that should
write. The experiments do not yet restrict their writes to it, nor checkpoint through orbax's
multi-host path: multi-host runs of the experiments are not supported yet (a DDSS step and a
statistics pass are tested in 2 processes).

TPU numerics: TPUs run float32 matmuls and convolutions as bf16 passes by default. The metrics'
matmuls need float32, so they are traced under `precise()` (`jax.default_matmul_precision("float32")`):
every feature network (`ddss.metrics.features`: Inception, the digits networks), FID's whitened
distance in JAX (`fid.jax_distance_of_features`) and KID's kernels (`kid.mmd2`). GGDM's coefficient
algebra is elementwise (no matmuls). On CPU and GPU float32 is already the default, so nothing
changes there.
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA, POPULATION = "data", "population"
AXES = (DATA, POPULATION)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """`config.mesh`: devices on the data axis (None: all the population axis leaves) and on the
    population axis."""

    data: int | None = None
    population: int = 1

    @classmethod
    def from_config(cls, c) -> "MeshConfig":
        c = dict(c or {})
        unknown = sorted(set(c) - {"data", "population"})
        if unknown:
            raise ValueError(f"config.mesh.{unknown[0]} is not a mesh axis; config.mesh has data and population.")
        for name in ("data", "population"):
            v = c.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
                raise ValueError(f"config.mesh.{name} must be a positive number of devices (or None), got {v!r}.")
        return cls(data=c.get("data"), population=c.get("population") or 1)


def make_mesh(data: int | None = None, population: int = 1, *, devices=None) -> Mesh:
    """A (data, population) mesh over `devices` (default: all of them, every host's)."""
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    if population < 1 or n % population:
        raise ValueError(f"config.mesh.population = {population} does not divide the {n} devices.")
    data = n // population if data is None else data
    if data * population != n:
        raise ValueError(f"config.mesh asks for data × population = {data} × {population} = {data * population} "
                         f"devices; there are {n}. Make the product {n} (or leave config.mesh.data unset).")
    return jax.make_mesh((data, population), AXES, axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def from_config(mesh_cfg) -> Mesh:
    cfg = mesh_cfg if isinstance(mesh_cfg, MeshConfig) else MeshConfig.from_config(mesh_cfg)
    return make_mesh(cfg.data, cfg.population)


def current() -> Mesh:
    """The mesh the caller entered (`with jax.set_mesh(mesh):`, as the command line does), else every
    device on the data axis."""
    mesh = jax.sharding.get_mesh()
    if mesh is not None and not mesh.empty and set(AXES) <= set(mesh.axis_names):
        return mesh
    return make_mesh()


def describe(mesh: Mesh | None = None) -> dict:
    """What results.json records of the layout."""
    mesh = mesh or current()
    return {"data": int(mesh.shape[DATA]), "population": int(mesh.shape[POPULATION]),
            "processes": jax.process_count(), "device": jax.devices()[0].device_kind}


def batch_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Leading (batch) axis split over `data`."""
    return NamedSharding(mesh or current(), PartitionSpec(DATA))


def population_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Leading (candidate) axis split over `population`."""
    return NamedSharding(mesh or current(), PartitionSpec(POPULATION))


def candidate_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Leading (candidate) axis split over every device, population axis first: the search's chunks."""
    return NamedSharding(mesh or current(), PartitionSpec((POPULATION, DATA)))


def replicated(mesh: Mesh | None = None) -> NamedSharding:
    return NamedSharding(mesh or current(), PartitionSpec())


def constrain_batch(tree, mesh: Mesh | None = None, *, what: str = "batch"):
    """Inside jit: the batch (leading axis) split over `data` of `mesh` (default: the mesh the caller
    entered; none entered: one device, nothing to split). Its size must be a multiple of the data axis
    (one clear error otherwise)."""
    target = mesh if mesh is not None else jax.sharding.get_abstract_mesh()
    if target.empty or DATA not in target.axis_names:
        return tree
    d = target.shape[DATA]
    n = len(jax.tree.leaves(tree)[0])
    if n % d:
        raise ValueError(f"The {what} of {n} does not split over the {d} devices of the mesh's data axis: make it a "
                         f"multiple of {d} (or choose another layout with config.mesh).")
    if d == 1:
        return tree
    spec = PartitionSpec(DATA)
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, spec) if mesh is not None else spec)


def pad_to(tree, multiple: int):
    """(tree with its leading axis zero-padded to a multiple of `multiple`, the original length)."""
    n = len(jax.tree.leaves(tree)[0])
    extra = -n % multiple
    if not extra:
        return tree, n
    pad = lambda a: np.concatenate([np.asarray(a), np.zeros((extra,) + np.shape(a)[1:], np.asarray(a).dtype)])
    return jax.tree.map(pad, tree), n


def put_batch(tree, mesh: Mesh | None = None, axis: str = DATA):
    """(the batch as global arrays split along `axis`, its length before padding). Every host holds the
    whole batch (noise banks are drawn from shared keys) and contributes the rows its devices own."""
    mesh = mesh or current()
    tree, n = pad_to(tree, mesh.shape[axis])
    sharding = NamedSharding(mesh, PartitionSpec(axis))

    def place(a):
        a = np.asarray(a)
        if jax.process_count() == 1:
            return jax.device_put(a, sharding)
        return jax.make_array_from_callback(a.shape, sharding, lambda index: a[index])

    return jax.tree.map(place, tree), n


def put_local_batch(local, mesh: Mesh | None = None):
    """A global batch from each host's own rows (a data loader's per-host shard): the global batch is
    the hosts' rows in process order."""
    mesh = mesh or current()
    sharding = NamedSharding(mesh, PartitionSpec(DATA))
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), local)


def to_host(x) -> Any:
    """A (possibly multi-host) array as one numpy array on every host."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return jax.tree.map(np.asarray, multihost_utils.process_allgather(x, tiled=True))
    return jax.tree.map(np.asarray, x)


def is_main_process() -> bool:
    """True on the host that writes logs, results and exports (process 0)."""
    return jax.process_index() == 0


MULTIHOST_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "MEGASCALE_COORDINATOR_ADDRESS",
                 "TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE")


def initialize(distributed: bool | None = None) -> bool:
    """`jax.distributed.initialize()` when `distributed` is True, or (None) when the environment
    describes a multi-host job; must run before anything else touches JAX's backends. Returns
    whether it ran. On a Cloud TPU pod slice and under SLURM or Open MPI JAX finds the coordinator
    itself; elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID."""
    if distributed is False:
        return False
    if distributed is None:
        tpu_hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
        multi = any(os.environ.get(k) for k in MULTIHOST_ENV if k != "TPU_WORKER_HOSTNAMES") or "," in tpu_hosts
        if not multi or int(os.environ.get("JAX_NUM_PROCESSES", "2") or 2) == 1:
            return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes (GPU and TPU ignore it)
    kwargs = {}
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        kwargs = dict(coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
                      num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
                      process_id=int(os.environ["JAX_PROCESS_ID"]))
    jax.distributed.initialize(**kwargs)
    return True


def precise():
    """float32 matmuls and convolutions (TPUs default to bf16 passes): a context manager."""
    return jax.default_matmul_precision("float32")


def precise_fn(fn):
    """`fn` traced under `precise()`: its matmuls and convolutions run in float32 on any backend."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with precise():
            return fn(*args, **kwargs)

    return wrapped
