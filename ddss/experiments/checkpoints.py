"""Resuming from orbax checkpoints when the newest one is damaged (a kill during its save, a full disk,
a truncated copy): restore the newest checkpoint that reads back, set the damaged ones aside, warn in
one line, and go on. A run loses at most the work since the checkpoint it falls back to.

Several hosts: every process saves and restores (orbax's multi-host path: process 0 writes what is
replicated, each host the shards it holds); `abstract` restores straight into the mesh's shardings.
"""
from __future__ import annotations

import os
import shutil
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from ddss import parallel


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:160]}{'…' if len(text) > 160 else ''}"


def abstract(tree, sharding=None):
    """What `restore_latest` restores `tree`'s structure into: each leaf's shape and dtype (`tree` may be
    arrays or `jax.eval_shape`'s structs), placed with `sharding` (default: replicated over the current
    mesh, as parameters and optimizer state are)."""
    sharding = sharding or parallel.replicated()
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype, sharding=sharding), tree)


def restore_latest(mngr: ocp.CheckpointManager, abstract=None):
    """(step, restored tree) of the newest checkpoint of `mngr` that restores (into the structure of
    `abstract` when given), or (None, None) when there is none.

    Newer checkpoints that fail to restore are moved to `<checkpoints>/../damaged_checkpoints/` (kept,
    not deleted) with a one-line warning on stderr. When every checkpoint fails the error is raised,
    and nothing is moved: that points at the run, not at one damaged file."""
    steps = sorted(mngr.all_steps(), reverse=True)
    failures = []
    for step in steps:
        args = ocp.args.StandardRestore(abstract) if abstract is not None else ocp.args.StandardRestore()
        try:
            restored = mngr.restore(step, args=args)
        except Exception as error:  # orbax/tensorstore raise many types for a damaged file
            failures.append((step, error))
            continue
        if failures:
            directory = os.fspath(mngr.directory)
            set_aside(directory, os.path.join(os.path.dirname(directory), "damaged_checkpoints"), failures, step)
            parallel.sync("damaged_checkpoints")  # moved (by process 0) before any process reloads
            mngr.reload()
        return step, restored
    if failures:
        step, error = failures[0]
        raise ValueError(f"No checkpoint in {os.fspath(mngr.directory)} can be restored (newest, step {step}: "
                         f"{_one_line(error)}). Delete that directory to start the run over.") from error
    return None, None


@parallel.main_only
def set_aside(directory: str, aside: str, failures: list, step: int) -> None:
    """Moves the damaged checkpoints out of the manager's directory, one warning line each."""
    os.makedirs(aside, exist_ok=True)
    for bad, error in failures:
        target = os.path.join(aside, str(bad))
        if os.path.exists(target):
            shutil.rmtree(target)
        shutil.move(os.path.join(directory, str(bad)), target)
        print(f"warning: checkpoint {bad} in {directory} is damaged ({_one_line(error)}); resuming from "
              f"checkpoint {step} instead (the damaged one is kept in {target}).", file=sys.stderr)
