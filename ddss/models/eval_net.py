"""The digits *evaluation* feature network: an MLP on the 64 pixels, independent of the loss network.

`ddss.models.classifier` (conv, SiLU, strided convolutions; seed 0; the fixed train/test split of
`ddss.data.digits`) is the feature space the learned samplers' training loss uses, so an FID in
that space rewards fitting the loss rather than the data. This network scores samples instead: a
different architecture (no convolutions; GELU; LayerNorm), trained from a different seed on a
different, stratified split (`ddss/configs/digits_eval_features.py`), and used by no loss.

  flatten(64) -> Dense(256) -> GELU -> LayerNorm -> Dense(256) -> GELU -> Dense(64) -> GELU = features
  features -> Dense(10) = logits

`features` are the `feature_dim`-wide activations after the last GELU, `logits` the class scores.
Dropout (training only) follows the first block and the features.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class EvalNetConfig:
    image_size: int = 8
    channels: int = 1
    hidden: tuple[int, ...] = (256, 256)
    feature_dim: int = 64
    num_classes: int = 10
    dropout: float = 0.1

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class EvalNet(nn.Module):
    """Dense(h0) -> GELU -> LayerNorm -> [Dense(h_i) -> GELU]... -> Dense(feature_dim) -> GELU -> Dense(classes)."""

    config: EvalNetConfig

    @nn.compact
    def __call__(self, x, *, train: bool = False, return_features: bool = False):
        cfg = self.config
        if x.ndim != 4 or x.shape[1:] != (cfg.image_size, cfg.image_size, cfg.channels):
            raise ValueError(
                f"EvalNet input has shape {tuple(x.shape)}; it takes NHWC images "
                f"[B, {cfg.image_size}, {cfg.image_size}, {cfg.channels}] in [-1, 1]."
            )
        h = x.reshape(x.shape[0], -1)
        h = nn.gelu(nn.Dense(cfg.hidden[0], name="dense_0")(h))
        h = nn.LayerNorm(name="norm_0")(h)
        h = nn.Dropout(cfg.dropout, deterministic=not train)(h)
        for i, w in enumerate(cfg.hidden[1:], start=1):
            h = nn.gelu(nn.Dense(w, name=f"dense_{i}")(h))
        features = nn.gelu(nn.Dense(cfg.feature_dim, name="features")(h))
        logits = nn.Dense(cfg.num_classes, name="logits")(nn.Dropout(cfg.dropout, deterministic=not train)(features))
        return (logits, features) if return_features else logits


def init_params(config: EvalNetConfig, key: jax.Array):
    x = jnp.zeros((1, config.image_size, config.image_size, config.channels))
    return EvalNet(config).init(key, x)["params"]


def features_fn(config: EvalNetConfig, params):
    """images [B, H, W, C] in [-1, 1] -> features [B, feature_dim] (pure, jittable, differentiable)."""
    model = EvalNet(config)
    return lambda x: model.apply({"params": params}, x, return_features=True)[1]


def logits_fn(config: EvalNetConfig, params):
    model = EvalNet(config)
    return lambda x: model.apply({"params": params}, x)
