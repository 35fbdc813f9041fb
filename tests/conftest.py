"""Shared test helpers.

Reference libraries (torch, diffusers) are optional for users but required in CI: with
DDSS_REQUIRE_REFERENCES=1 (set by .ci/run) a missing one is an error, never a silent skip.
"""
import importlib
import os

import pytest


def require(module_name: str):
    if os.environ.get("DDSS_REQUIRE_REFERENCES") == "1":
        return importlib.import_module(module_name)
    return pytest.importorskip(module_name)


def relative_error(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


MOCK_EXAMPLES = 10


def fake_tfds_data_source(builder, split, decoders=None, deserialize_method=None, **kwargs):
    """`as_data_source_fn` for `tfds.testing.mock_data`: TFDS' own seeded fake examples, as a plain list.

    The default mock (tfds 4.9.10) sets `__getitems__` on a MagicMock, where it is not bound and
    fails with "missing 'record_keys'"; `__getitem__` alone works. This replacement yields the same
    examples (tfds' RandomFakeGenerator, seeded per index) without that bug.
    """
    from tensorflow_datasets.testing import mocking

    generator = mocking.RandomFakeGenerator(builder.info.features, MOCK_EXAMPLES)
    return [generator[i] for i in range(MOCK_EXAMPLES)]


def random_inception_params(seed: int = 0) -> dict:
    """Random FID-Inception parameters of the exact architecture, in a second (Flax's jitted init: 20 s).

    He-normal kernels and random BN statistics (as in a trained network: Flax's zero means and unit
    variances would leave the ReLU pool features all zero), drawn in numpy from the parameter shapes.
    """
    import jax
    import numpy as np

    from ddss.metrics import inception

    rng = np.random.default_rng(seed)

    def draw(key_path, leaf):
        name = jax.tree_util.keystr(key_path).split("'")[-2]
        if name == "kernel":
            return rng.normal(0.0, (2.0 / np.prod(leaf.shape[:-1])) ** 0.5, leaf.shape).astype(np.float32)
        if name == "fc_kernel":
            return rng.normal(0.0, 0.02, leaf.shape).astype(np.float32)
        if name in ("bn_var", "bn_scale"):
            return (0.5 + rng.uniform(size=leaf.shape)).astype(np.float32)
        return rng.normal(0.0, 0.1, leaf.shape).astype(np.float32)  # bn_mean, bn_bias, fc_bias

    return jax.tree_util.tree_map_with_path(draw, inception.param_shapes())


def random_inception_weights(path, seed: int = 0) -> str:
    """A converted FID-Inception file (`random_inception_params`) at `path`."""
    from ddss.metrics import inception

    inception.save(str(path), random_inception_params(seed))
    return str(path)


def digest(directory) -> dict:
    """{relative path: sha256} of every file under `directory`: what "nothing was touched" compares."""
    import hashlib

    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}
