"""Class labels as a sampler input: a batch of starting noise with its labels, and how labels are drawn.

A class-conditional sampler starts from `Labelled(x, y)`: noise `x` [B, H, W, C] and integer labels
`y` [B]. It is a JAX pytree, so a jitted sampler takes it as one argument, and new labels (like new
noise) reuse the compiled program. Slicing it slices both, so a bank of them is batched like an array:

  bank = conditioning.Labelled(noise, conditioning.draw("uniform", len(noise), 1000, key))
  x, y = conditioning.split(bank[:64])          # (x, None) for a plain array

Labels are drawn two ways, and `results.json` records which, because FID moves with the choice:
- "uniform" (the default): each class equally often (N // C of every class, the remainder spread by
  one over the first classes), in a random order;
- "random": each label independently uniform over the classes, as guided-diffusion's sampling
  script draws them (class counts then vary, which adds variance to FID).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

DRAWS = ("uniform", "random")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Labelled:
    """Starting noise `x` [B, ...] with class labels `y` [B] (int)."""

    x: jax.Array
    y: jax.Array

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index) -> "Labelled":
        return Labelled(self.x[index], self.y[index])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.x))


def split(batch) -> tuple[jax.Array, jax.Array | None]:
    """(noise, labels) of a `Labelled` batch; (batch, None) of plain noise."""
    return (batch.x, batch.y) if isinstance(batch, Labelled) else (batch, None)


def draw(kind: str, n: int, num_classes: int, key) -> np.ndarray:
    """int32 labels [n] in [0, num_classes): "uniform" (balanced, shuffled) or "random" (i.i.d.)."""
    if kind not in DRAWS:
        raise ValueError(f"Unknown label draw {kind!r}; choose one of {DRAWS}.")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}.")
    if kind == "random":
        return np.asarray(jax.random.randint(key, (n,), 0, num_classes), np.int32)
    return np.asarray(jax.random.permutation(key, np.arange(n) % num_classes), np.int32)


def check(labels, num_classes: int, batch: int | None = None, *, what: str = "labels") -> np.ndarray:
    """Concrete labels as int32, or one ValueError naming what is wrong: not integers, not 1-D,
    not one per image, or outside [0, num_classes)."""
    y = np.asarray(labels)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or (y.size and np.all(y == np.round(y)))):
        raise ValueError(f"{what} must be a 1-D array of integer class indices, got {y.dtype} {y.shape}.")
    if batch is not None and len(y) != batch:
        raise ValueError(f"{what}: {len(y)} labels for {batch} images; pass one label per image.")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes - 1}] (the model has {num_classes} classes); "
                         f"got values from {int(y.min())} to {int(y.max())}.")
    return y.astype(np.int32)
