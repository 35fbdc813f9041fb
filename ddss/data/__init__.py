"""Image data for training and evaluating samplers, as NHWC float32 batches in [-1, 1].

Two sources:
  `ddss.data.digits`  scikit-learn's 1797 handwritten 8×8 digits (bundled, offline; fixed train/test
                      split), for tests and small experiments;
  `ddss.data.tfds`    TFDS image datasets (CIFAR-10, ImageNet 64×64, LSUN) read with random access
                      from locally prepared ArrayRecord files; never downloads unless asked.

Both shuffle each epoch with a permutation fixed by (seed, epoch) (`index_batches`), so a seed
determines every batch. Example:

    from ddss import data
    for batch in data.tfds_batches("cifar10", "train", batch_size=128, seed=0):
        batch["image"]  # float32 [128, 32, 32, 3] in [-1, 1]
"""
import importlib

from ddss.data import digits
from ddss.data.digits import index_batches
from ddss.data.digits import batches as digits_batches
from ddss.data.digits import load as load_digits

# TFDS (and through it TensorFlow's file systems) loads only when one of its names is first used.
_TFDS_NAMES = {name: name for name in ("DataConfig", "DatasetNotPreparedError", "batches_from_config",
                                        "batches_from_source", "center_crop_resize", "from_config", "open_source",
                                        "supported_datasets", "to_model_range")}
_TFDS_NAMES["tfds_batches"] = "batches"


def __getattr__(name):
    if name == "tfds":
        return importlib.import_module("ddss.data.tfds")
    if name in _TFDS_NAMES:
        return getattr(importlib.import_module("ddss.data.tfds"), _TFDS_NAMES[name])
    raise AttributeError(f"module 'ddss.data' has no attribute {name!r}")


__all__ = [
    "digits",
    "tfds",
    "index_batches",
    "load_digits",
    "digits_batches",
    "DataConfig",
    "DatasetNotPreparedError",
    "from_config",
    "open_source",
    "supported_datasets",
    "tfds_batches",
    "batches_from_config",
    "batches_from_source",
    "center_crop_resize",
    "to_model_range",
]
