"""Parameter files: nested parameter dicts <-> safetensors, with JSON metadata in the header.

A file holds one flat tensor per leaf, named by its path joined with '/', and a string→string
metadata header (the model config and anything else that makes the file self-describing). Nothing
is unpickled: safetensors stores raw arrays.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from ddss import parallel


class WeightFileError(ValueError):
    """A parameter file is missing, unreadable, or does not fit the model it is loaded into."""


def flatten(params) -> dict[str, np.ndarray]:
    """{'a': {'b': x}} -> {'a/b': x as a C-contiguous numpy array}. Contiguous because safetensors'
    numpy writer stores a strided view's buffer in memory order, not in index order: a transposed
    kernel would be written scrambled."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        flat["/".join(k.key for k in path)] = np.ascontiguousarray(leaf)
    return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def canonical_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The safetensors bytes of `tensors` and string `metadata`, with the JSON header's keys sorted.

    safetensors writes its metadata map in hash order, which changes from process to process; sorting
    the header (the same length, since only the order changes) makes the same content the same bytes,
    so two runs of one configuration write byte-identical files."""
    from safetensors.numpy import save as to_bytes

    data = to_bytes(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    if len(text) > n:  # cannot happen for a reordering; keep safetensors' own bytes if it ever does
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n :]


@parallel.main_only
def save(path: str, params, metadata: dict[str, Any]) -> None:
    """Writes params (a nested dict of arrays) and JSON-encoded metadata values to `path`: whole or not
    at all (a temporary file renamed into place), the same content always as the same bytes. In a
    multi-host run only process 0 writes."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = canonical_bytes(flatten(params), {k: json.dumps(v) for k, v in metadata.items()})
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def load(path: str, *, what: str = "parameter file", hint: str = "") -> tuple[dict, dict[str, Any]]:
    """Reads a file written by `save`: (nested params of numpy arrays, decoded metadata)."""
    if not os.path.isfile(path):
        raise WeightFileError(f"{what} not found: {path}. {hint}".strip())
    try:
        flat = load_file(path)
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as f:
            header = f.metadata() or {}
        metadata = {k: json.loads(v) for k, v in header.items()}
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightFileError(f"{what} {path} is corrupt or not a safetensors file ({e}). {hint}".strip()) from e
    return unflatten(flat), metadata


def check_against(params, expected, *, source: str) -> None:
    """Raises one WeightFileError listing missing, unexpected and wrongly shaped parameters."""
    got, want = flatten(params), {k: v.shape for k, v in flatten_shapes(expected).items()}
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    wrong = sorted(f"{k}: file {tuple(got[k].shape)} vs model {tuple(want[k])}"
                   for k in set(got) & set(want) if tuple(got[k].shape) != tuple(want[k]))
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label}: {items[:5]}{more}")
        raise WeightFileError(
            f"{source} does not match the model config: " + "; ".join(parts)
            + ". Check that the config describes the architecture the weights were trained with."
        )


def flatten_shapes(tree) -> dict[str, Any]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out["/".join(k.key for k in path)] = leaf
    return out


def check_finite(params, *, source: str) -> None:
    bad = [k for k, v in flatten(params).items() if not np.all(np.isfinite(v))]
    if bad:
        raise WeightFileError(f"{source} has non-finite values in {bad[:5]}; the file is damaged or the run diverged.")
