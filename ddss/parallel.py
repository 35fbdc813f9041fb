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

Across hosts (a TPU pod slice, several GPU hosts) every process runs the same program, the same
command line on every host:
  * `initialize()` calls `jax.distributed.initialize()` first when the environment describes a
    multi-host job (or `--distributed` asks for it);
  * each host reads only the rows its devices take: `put_rows(read, n)` (a loader's `read(a, b)`),
    `put_batch` for banks every host draws from the same keys;
  * `to_host` gives every host the global value, so every host makes the same decisions;
  * only process 0 writes files (`main_only`; `is_main_process()`), and `sync` holds the others
    until what they read next is written;
  * checkpoints go through orbax's multi-host path (every process saves and restores; state is
    restored straight into its placement on the mesh);
  * `compilation_cache(dir)` (`--compilation_cache=DIR`) lets every host, and every rerun, reuse
    the compiled programs.
The work directory must be one directory every host sees (a shared file system: NFS, Filestore).

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


def axis_size(mesh: Mesh, axis) -> int:
    """Devices along `axis`: a mesh axis name, or a tuple of them (split over their product)."""
    return int(np.prod([mesh.shape[a] for a in ((axis,) if isinstance(axis, str) else axis)]))


def local_rows(n: int, mesh: Mesh | None = None, axis=DATA) -> tuple[int, int]:
    """The rows [lo, hi) of an n-row batch (n a multiple of the axis size) that this process's devices
    hold when the batch is split along `axis`: the rows this host loads itself."""
    mesh = mesh or current()
    spans = {range(n)[index[0]] for index in
             NamedSharding(mesh, PartitionSpec(axis)).addressable_devices_indices_map((n,)).values()}
    lo, hi = min(r.start for r in spans), max(r.stop for r in spans)
    if sum(len(r) for r in spans) != hi - lo:
        raise ValueError(f"This process's devices hold rows {sorted((r.start, r.stop) for r in spans)} of the batch, "
                         "not one contiguous range: build the mesh with parallel.make_mesh(), whose devices are in "
                         "process order.")
    return lo, hi


def put_rows(read, n: int, mesh: Mesh | None = None, axis=DATA, *, size: int | None = None,
             pad: bool = True, what: str = "batch"):
    """(A global batch of `n` rows split along `axis`, n), each host reading only the rows its devices
    hold: `read(a, b)` returns rows [a, b) of the batch (an array, or a tree of arrays with one leading
    axis), and is called once per process. Rows past `n` (up to `size` if given, then up to a multiple
    of the axis size) are zeros; `pad=False` (a training batch, where zero rows would be trained on)
    refuses an `n` that does not split instead, naming it as `what`. One process reads every row."""
    mesh = mesh or current()
    devices = axis_size(mesh, axis)
    if n < 1:
        raise ValueError(f"The {what} is empty (0 rows); pass at least one.")
    if not pad and n % devices:
        raise ValueError(f"The {what} of {n} does not split over the {devices} devices of the mesh's {axis} axis: "
                         f"make it a multiple of {devices} (or choose another layout with config.mesh).")
    padded = max(n, size or 0)
    padded += -padded % devices
    lo, hi = local_rows(padded, mesh, axis)
    a, b = min(lo, n), min(hi, n)
    local = read(a, b) if b > a else jax.tree.map(lambda x: x[:0], read(n - 1, n))  # only padding here: its shape
    sharding = NamedSharding(mesh, PartitionSpec(axis))

    def place(x):
        x = np.asarray(x)
        if len(x) < hi - lo:
            x = np.concatenate([x, np.zeros((hi - lo - len(x),) + x.shape[1:], x.dtype)])
        def shard(index):  # a device's rows, from this host's
            rows = range(padded)[index[0]]
            return x[(slice(rows.start - lo, rows.stop - lo),) + tuple(index[1:])]

        return jax.make_array_from_callback((padded,) + x.shape[1:], sharding, shard)

    return jax.tree.map(place, local), n


def put_batch(tree, mesh: Mesh | None = None, axis=DATA):
    """(the batch as global arrays split along `axis`, its length before padding) from a batch every
    host holds whole (noise banks are drawn from shared keys); each host places the rows its devices own."""
    n = len(jax.tree.leaves(tree)[0])
    return put_rows(lambda a, b: jax.tree.map(lambda x: np.asarray(x)[a:b], tree), n, mesh, axis)


def to_host(x) -> Any:
    """A (possibly multi-host) array, or tree of them, as numpy arrays holding the global value on every host."""
    def one(a):
        if not isinstance(a, jax.Array) or a.is_fully_addressable:
            return np.asarray(a)
        if a.is_fully_replicated:  # every host already holds all of it
            return np.asarray(a.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(a, tiled=True))

    return jax.tree.map(one, x)


def is_main_process() -> bool:
    """True on the host that writes logs, results and exports (process 0)."""
    return jax.process_index() == 0


def main_only(fn):
    """`fn` (a function that writes files) runs on process 0 only; elsewhere the call returns None. A
    process that reads the file afterwards first waits at `sync`."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        return fn(*args, **kwargs) if jax.process_index() == 0 else None

    return wrapped


def sync(name: str) -> None:
    """Every process waits here until all have arrived (with one process, nothing happens): after
    process 0 writes what the others read next. Every process must pass the same syncs in order."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


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
    if jax.process_index() != 0:
        os.environ.setdefault("TQDM_DISABLE", "1")  # one set of progress bars: process 0's
    return True


def compilation_cache(directory: str, *, min_compile_time_s: float = 1.0) -> None:
    """Keeps XLA's compiled programs in `directory` (JAX's persistent compilation cache), so a rerun, a
    resumed run or every host of a pod reuses them instead of compiling again; programs that compiled in
    under `min_compile_time_s` are not kept. A directory on a shared file system serves every host. Call it before the first compilation (`ddss --compilation_cache=DIR` does)."""
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))


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
