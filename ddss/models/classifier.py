"""A small convolutional classifier for 8×8 digits whose penultimate activations are a feature space.

FID and KID need a feature network trained on the data's domain; for the embedded digits model
that is this classifier (Inception features mean little on 8×8 grey-scale digits). `features`
returns the `feature_dim`-wide penultimate layer (after its SiLU), `logits` the class scores.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    image_size: int = 8
    channels: int = 1
    widths: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 64
    num_classes: int = 10
    dropout: float = 0.2

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class Classifier(nn.Module):
    """conv(w0) -> [strided conv(w_i)]... -> dense(feature_dim) -> dense(num_classes), SiLU between."""

    config: ClassifierConfig

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        cfg = self.config
        if x.ndim != 4 or x.shape[1:] != (cfg.image_size, cfg.image_size, cfg.channels):
            raise ValueError(
                f"Classifier input has shape {tuple(x.shape)}; it takes NHWC images "
                f"[B, {cfg.image_size}, {cfg.image_size}, {cfg.channels}] in [-1, 1]."
            )
        h = nn.silu(nn.Conv(cfg.widths[0], (3, 3), name="conv_0")(x))
        for i, w in enumerate(cfg.widths[1:], start=1):
            h = nn.silu(nn.Conv(w, (3, 3), strides=(2, 2), name=f"conv_{i}")(h))
        h = h.reshape(h.shape[0], -1)
        h = nn.Dropout(cfg.dropout, deterministic=not train)(h)
        features = nn.silu(nn.Dense(cfg.feature_dim, name="features")(h))
        logits = nn.Dense(cfg.num_classes, name="logits")(nn.Dropout(cfg.dropout, deterministic=not train)(features))
        return (logits, features) if return_features else logits


def init_params(config: ClassifierConfig, key: jax.Array):
    x = jnp.zeros((1, config.image_size, config.image_size, config.channels))
    return Classifier(config).init(key, x)["params"]


def features_fn(config: ClassifierConfig, params):
    """images [B, H, W, C] in [-1, 1] -> features [B, feature_dim] (pure, jittable, differentiable)."""
    model = Classifier(config)
    return lambda x: model.apply({"params": params}, x, return_features=True)[1]


def logits_fn(config: ClassifierConfig, params):
    model = Classifier(config)
    return lambda x: model.apply({"params": params}, x)
