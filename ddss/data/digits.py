"""scikit-learn's handwritten digits: a tiny image data set that needs no download.

`sklearn.datasets.load_digits` ships 1797 grey-scale 8×8 images (integer values 0..16, classes
0..9) inside scikit-learn itself, so tests and small experiments can train and evaluate on real
images offline, in seconds, on a CPU.

Images come out NHWC float32 [N, 8, 8, 1] in [-1, 1] (x / 8 − 1, native 8×8, no resizing); labels
are int32. Splits:
  "all"    all 1797 images, in scikit-learn's order;
  "test"   a fixed 360 images;  "train"  the remaining 1437.
The train/test rule: `np.random.default_rng(0).permutation(1797)`; its first 360 entries are the
test indices, the rest the train indices; each split keeps scikit-learn's order (sorted indices).
The rule never changes, so the two splits are disjoint and identical on every machine. They are not
stratified by class.

`batches` shuffles each epoch with its own generator seeded from (seed, epoch) (`index_batches`, the
rule `ddss.data.tfds` shares), so a given seed always yields the same batches.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = [
    "NUM_EXAMPLES",
    "NUM_TEST",
    "SPLITS",
    "split_indices",
    "load",
    "batches",
    "index_batches",
]

NUM_EXAMPLES = 1797
NUM_TEST = 360
SPLITS = ("all", "train", "test")
_SPLIT_SEED = 0


def split_indices(split: str) -> np.ndarray:
    """Indices into scikit-learn's 1797 digits for a split ("all", "train" or "test"), sorted."""
    if split not in SPLITS:
        raise ValueError(f"Unknown digits split {split!r}; expected one of {SPLITS}.")
    if split == "all":
        return np.arange(NUM_EXAMPLES)
    order = np.random.default_rng(_SPLIT_SEED).permutation(NUM_EXAMPLES)
    chosen = order[:NUM_TEST] if split == "test" else order[NUM_TEST:]
    return np.sort(chosen)


def load(split: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """The digits of one split: images float32 [N, 8, 8, 1] in [-1, 1] and labels int32 [N].

    Splits: "all" (1797), "train" (1437) and "test" (360); see the module docstring for the rule.
    """
    indices = split_indices(split)  # validates the split before the (slower) sklearn import
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images[indices].astype(np.float32) / 8.0 - 1.0
    labels = digits.target[indices].astype(np.int32)
    return images[..., None], labels


def index_batches(
    num_examples: int,
    batch_size: int,
    seed: int,
    *,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
) -> Iterator[np.ndarray]:
    """Batches of example indices, epoch after epoch (forever when num_epochs is None).

    Each epoch visits every index once: in order when shuffle is False, otherwise in the order of
    `np.random.default_rng((seed, epoch)).permutation(num_examples)`, so the batches depend only on
    the arguments. With drop_remainder=False the last, smaller batch of each epoch is kept.
    Arguments are checked at the call, not at the first `next`.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if num_examples <= 0:
        raise ValueError(f"There are no examples to batch (num_examples={num_examples}).")
    if num_epochs is not None and num_epochs < 0:
        raise ValueError(f"num_epochs must be None (forever) or >= 0, got {num_epochs}.")
    if drop_remainder and batch_size > num_examples:
        raise ValueError(
            f"batch_size {batch_size} exceeds the {num_examples} examples, so drop_remainder=True "
            "would yield no batch; use a smaller batch or drop_remainder=False."
        )
    stop = num_examples - num_examples % batch_size if drop_remainder else num_examples
    return _epochs_of_indices(num_examples, batch_size, seed, shuffle, num_epochs, stop)


def _epochs_of_indices(num_examples, batch_size, seed, shuffle, num_epochs, stop) -> Iterator[np.ndarray]:
    """The generator behind `index_batches` (arguments already checked)."""
    epoch = 0
    while num_epochs is None or epoch < num_epochs:
        if shuffle:
            order = np.random.default_rng((seed, epoch)).permutation(num_examples)
        else:
            order = np.arange(num_examples)
        for start in range(0, stop, batch_size):
            yield order[start : start + batch_size]
        epoch += 1


def batches(
    split: str,
    batch_size: int,
    seed: int,
    *,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
) -> Iterator[dict[str, np.ndarray]]:
    """Shuffled batches {'image': float32 [B, 8, 8, 1], 'label': int32 [B]} of a digits split.

    The order is a fresh permutation per epoch, fixed by (seed, epoch) (see `index_batches`).
    num_epochs=None repeats forever; drop_remainder=False keeps each epoch's last, smaller batch.
    """
    images, labels = load(split)
    order = index_batches(len(labels), batch_size, seed, num_epochs=num_epochs, drop_remainder=drop_remainder)
    return ({"image": images[indices], "label": labels[indices]} for indices in order)
