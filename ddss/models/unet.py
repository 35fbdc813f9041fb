"""The DDPM UNet (Ho et al. 2020) in Flax linen, with every residual and attention block skippable.

The architecture and parameter names follow diffusers' `UNet2DModel` (DDPM layout: `DownBlock2D`,
`AttnDownBlock2D`, `UNetMidBlock2D`, `UpBlock2D`, `AttnUpBlock2D`), so a public checkpoint converts
by renaming (`ddss.models.convert`) and a config reads straight from its `config.json`.

Skippable blocks are numbered 0..L-1 in execution order: the down path (each level's residual
blocks, each followed by its attention block where the level has one), the middle (residual,
attention, residual), then the up path in the same pattern. Input and output layers, the time
embedding, and the down/up-sampling layers never skip. Skipping a block removes its residual branch:

- a residual block returns its shortcut path, `shortcut(x) / output_scale_factor`, where the shortcut
  is the identity or the 1×1 projection when the channel count changes (as at every skip
  concatenation of the up path);
- an attention block returns `x / rescale_output_factor`, the identity for every DDPM checkpoint.

Two ways to skip, with the same result:

- `skip_mask`: a traced boolean array [L] (True = skip). Every block is computed and the output is
  selected, so one compilation serves every mask and the call can be vmapped over masks (search).
- `skip`: a static tuple of block indices. Those blocks are not traced at all, so their compute is
  really gone (a deployed pruned sampler).

`blocks(config)` lists the skippable blocks with their multiply-accumulate count per image, and
`network_macs(config)` the whole network's, so a search can budget compute.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

DOWN_BLOCK_TYPES = ("DownBlock2D", "AttnDownBlock2D")
UP_BLOCK_TYPES = ("UpBlock2D", "AttnUpBlock2D")


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    """Architecture of a DDPM UNet; field names and meanings are those of diffusers' `UNet2DModel`."""

    sample_size: int = 32
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 256, 256)
    down_block_types: tuple[str, ...] = ("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D")
    up_block_types: tuple[str, ...] = ("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    layers_per_block: int = 2
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    flip_sin_to_cos: bool = False
    freq_shift: float = 1.0
    downsample_padding: int = 0
    attention_head_dim: int | None = None
    mid_block_scale_factor: float = 1.0
    resnet_time_scale_shift: str = "default"
    add_attention: bool = True
    attn_norm_num_groups: int | None = None
    center_input_sample: bool = False
    time_embedding_dim: int | None = None
    dropout: float = 0.0

    def __post_init__(self):
        levels = len(self.block_out_channels)
        if len(self.down_block_types) != levels or len(self.up_block_types) != levels:
            raise ValueError(
                f"UNetConfig: {levels} block_out_channels but {len(self.down_block_types)} down_block_types and "
                f"{len(self.up_block_types)} up_block_types; give one block type per level."
            )
        for kind, allowed in ((self.down_block_types, DOWN_BLOCK_TYPES), (self.up_block_types, UP_BLOCK_TYPES)):
            unknown = [k for k in kind if k not in allowed]
            if unknown:
                raise ValueError(f"UNetConfig: unsupported block types {unknown}; this UNet supports {allowed}.")
        if self.resnet_time_scale_shift not in ("default", "scale_shift"):
            raise ValueError(
                f"UNetConfig: resnet_time_scale_shift={self.resnet_time_scale_shift!r}; use 'default' or 'scale_shift'."
            )
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"UNetConfig: channels {bad} are not divisible by norm_num_groups={self.norm_num_groups}.")

    @property
    def temb_dim(self) -> int:
        return self.time_embedding_dim or 4 * self.block_out_channels[0]

    @property
    def down_attention(self) -> tuple[bool, ...]:
        return tuple(t == "AttnDownBlock2D" for t in self.down_block_types)

    @property
    def up_attention(self) -> tuple[bool, ...]:
        return tuple(t == "AttnUpBlock2D" for t in self.up_block_types)

    @property
    def mid_attention_groups(self) -> int | None:
        """diffusers: the middle attention normalises with `attn_norm_num_groups`, or with the resnet groups
        under the 'default' time embedding and not at all under 'scale_shift'."""
        if self.attn_norm_num_groups is not None:
            return self.attn_norm_num_groups
        return self.norm_num_groups if self.resnet_time_scale_shift == "default" else None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UNetConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names}
        return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class Block:
    """One skippable block: its index, kind ('resnet' or 'attention'), parameter path, spatial size,
    channels and the multiply-accumulates its residual branch costs per image (what skipping saves)."""

    index: int
    kind: str
    path: tuple[str, ...]
    resolution: int
    in_channels: int
    out_channels: int
    macs: int


def _resnet_macs(config: UNetConfig, res: int, cin: int, cout: int) -> int:
    temb = config.temb_dim * cout * (2 if config.resnet_time_scale_shift == "scale_shift" else 1)
    return res * res * 9 * (cin * cout + cout * cout) + temb


def _attention_macs(res: int, c: int) -> int:
    n = res * res
    return 4 * n * c * c + 2 * n * n * c


def blocks(config: UNetConfig) -> tuple[Block, ...]:
    """The skippable blocks of `config` in index order (the order the network runs them)."""
    out: list[Block] = []

    def add(kind, path, res, cin, cout):
        macs = _resnet_macs(config, res, cin, cout) if kind == "resnet" else _attention_macs(res, cout)
        out.append(Block(len(out), kind, path, res, cin, cout, macs))

    chans = config.block_out_channels
    res, c = config.sample_size, chans[0]
    skip_channels = [c]
    for i, cout in enumerate(chans):
        for j in range(config.layers_per_block):
            add("resnet", (f"down_blocks_{i}", f"resnets_{j}"), res, c, cout)
            c = cout
            if config.down_attention[i]:
                add("attention", (f"down_blocks_{i}", f"attentions_{j}"), res, c, c)
            skip_channels.append(c)
        if i < len(chans) - 1:
            res //= 2
            skip_channels.append(c)
    add("resnet", ("mid_block", "resnets_0"), res, c, c)
    if config.add_attention:
        add("attention", ("mid_block", "attentions_0"), res, c, c)
    add("resnet", ("mid_block", "resnets_1"), res, c, c)
    for i, cout in enumerate(reversed(chans)):
        for j in range(config.layers_per_block + 1):
            add("resnet", (f"up_blocks_{i}", f"resnets_{j}"), res, c + skip_channels.pop(), cout)
            c = cout
            if config.up_attention[i]:
                add("attention", (f"up_blocks_{i}", f"attentions_{j}"), res, c, c)
        if i < len(chans) - 1:
            res *= 2
    return tuple(out)


def num_blocks(config: UNetConfig) -> int:
    """L, the number of skippable blocks."""
    return len(blocks(config))


def network_macs(config: UNetConfig) -> int:
    """Multiply-accumulates of one full forward pass per image: skippable blocks plus the fixed layers
    (input/output convolutions, shortcuts, down/up-sampling convolutions, time embedding)."""
    total = sum(b.macs for b in blocks(config))
    chans, s = config.block_out_channels, config.sample_size
    total += s * s * 9 * (config.in_channels * chans[0] + chans[0] * config.out_channels)
    total += chans[0] * config.temb_dim + config.temb_dim * config.temb_dim
    for b in blocks(config):
        if b.kind == "resnet" and b.in_channels != b.out_channels:
            total += b.resolution * b.resolution * b.in_channels * b.out_channels
    res = s
    for i, c in enumerate(chans[:-1]):
        res //= 2
        total += res * res * 9 * c * c  # strided downsampling conv, at the output resolution
    rev = list(reversed(chans))
    res = s // 2 ** (len(chans) - 1)
    for c in rev[:-1]:
        res *= 2
        total += res * res * 9 * c * c  # upsampling conv after nearest-neighbour doubling
    return total


def timestep_embedding(t: jax.Array, dim: int, *, flip_sin_to_cos: bool, freq_shift: float,
                       max_period: float = 10000.0) -> jax.Array:
    """Sinusoidal embedding of real-valued times t [B] -> [B, dim] (DDPM; diffusers' `get_timestep_embedding`)."""
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
    angles = t.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    emb = jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)
    if flip_sin_to_cos:
        emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=-1)
    if dim % 2:
        emb = jnp.pad(emb, ((0, 0), (0, 1)))
    return emb


def _conv(features: int, kernel: int, name: str, stride: int = 1, padding: Any = "SAME") -> nn.Conv:
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=padding, name=name)


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv ×2 with the time embedding added (or scale/shift) between the convs."""

    config: UNetConfig
    out_channels: int
    output_scale_factor: float = 1.0

    @nn.compact
    def __call__(self, x, temb, skip, *, statically_skipped: bool, train: bool):
        cfg = self.config
        shortcut = x
        if x.shape[-1] != self.out_channels:
            shortcut = _conv(self.out_channels, 1, "conv_shortcut")(x)
        shortcut = shortcut / self.output_scale_factor
        if statically_skipped:
            return shortcut
        groups = dict(num_groups=cfg.norm_num_groups, epsilon=cfg.norm_eps)
        h = nn.silu(nn.GroupNorm(**groups, name="norm1")(x))
        h = _conv(self.out_channels, 3, "conv1")(h)
        scale_shift = cfg.resnet_time_scale_shift == "scale_shift"
        emb = nn.Dense(self.out_channels * (2 if scale_shift else 1), name="time_emb_proj")(nn.silu(temb))
        emb = emb[:, None, None, :]
        if scale_shift:
            scale, shift = jnp.split(emb, 2, axis=-1)
            h = nn.GroupNorm(**groups, name="norm2")(h) * (1 + scale) + shift
        else:
            h = nn.GroupNorm(**groups, name="norm2")(h + emb)
        h = nn.Dropout(cfg.dropout, deterministic=not train)(nn.silu(h))
        h = _conv(self.out_channels, 3, "conv2")(h)
        out = shortcut + h / self.output_scale_factor
        return out if skip is None else jnp.where(skip, shortcut, out)


class AttentionBlock(nn.Module):
    """Self-attention over the H×W positions with a residual connection (diffusers' `Attention`)."""

    config: UNetConfig
    num_groups: int | None
    rescale_output_factor: float = 1.0

    @nn.compact
    def __call__(self, x, skip, *, statically_skipped: bool):
        identity = x / self.rescale_output_factor
        if statically_skipped:
            return identity
        b, hgt, wid, c = x.shape
        head_dim = self.config.attention_head_dim or c
        heads = c // head_dim
        h = x
        if self.num_groups is not None:
            h = nn.GroupNorm(num_groups=self.num_groups, epsilon=self.config.norm_eps, name="group_norm")(h)
        h = h.reshape(b, hgt * wid, c)
        split = lambda y: y.reshape(b, hgt * wid, heads, head_dim)
        q = split(nn.Dense(c, name="to_q")(h))
        k = split(nn.Dense(c, name="to_k")(h))
        v = split(nn.Dense(c, name="to_v")(h))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        h = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, hgt * wid, c)
        h = nn.Dense(c, name="to_out_0")(h).reshape(b, hgt, wid, c)
        out = (x + h) / self.rescale_output_factor
        return out if skip is None else jnp.where(skip, identity, out)


class Downsample(nn.Module):
    """Strided 3×3 convolution; padding 0 pads one row/column at the bottom/right first (DDPM)."""

    channels: int
    padding: int

    @nn.compact
    def __call__(self, x):
        if self.padding == 0:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
        pad = ((self.padding, self.padding),) * 2
        return _conv(self.channels, 3, "conv", stride=2, padding=pad)(x)


class Upsample(nn.Module):
    """Nearest-neighbour doubling followed by a 3×3 convolution."""

    channels: int

    @nn.compact
    def __call__(self, x):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return _conv(self.channels, 3, "conv")(x)


class _Skipper:
    """Hands out block indices in execution order and the skip decision for each."""

    def __init__(self, skip_mask, static_skip: frozenset[int]):
        self.index, self.mask, self.static = 0, skip_mask, static_skip

    def next(self):
        i = self.index
        self.index += 1
        return (None if self.mask is None else self.mask[i]), i in self.static


def _resnet_and_attention(cfg, j, out_channels, attention, h, temb, skipper, train):
    """Residual block j of a level, followed by its attention block when the level has one. Called
    inside a parent's compact __call__, so the blocks become that parent's submodules."""
    skip, static = skipper.next()
    h = ResnetBlock(cfg, out_channels, name=f"resnets_{j}")(h, temb, skip, statically_skipped=static, train=train)
    if attention:
        skip, static = skipper.next()
        h = AttentionBlock(cfg, cfg.norm_num_groups, name=f"attentions_{j}")(h, skip, statically_skipped=static)
    return h


class DownBlock(nn.Module):
    config: UNetConfig
    out_channels: int
    attention: bool
    downsample: bool

    @nn.compact
    def __call__(self, h, temb, skipper: _Skipper, *, train: bool):
        cfg, outputs = self.config, []
        for j in range(cfg.layers_per_block):
            h = _resnet_and_attention(cfg, j, self.out_channels, self.attention, h, temb, skipper, train)
            outputs.append(h)
        if self.downsample:
            h = Downsample(self.out_channels, cfg.downsample_padding, name="downsamplers_0")(h)
            outputs.append(h)
        return h, outputs


class MidBlock(nn.Module):
    config: UNetConfig

    @nn.compact
    def __call__(self, h, temb, skipper: _Skipper, *, train: bool):
        cfg, c, scale = self.config, h.shape[-1], self.config.mid_block_scale_factor
        skip, static = skipper.next()
        h = ResnetBlock(cfg, c, scale, name="resnets_0")(h, temb, skip, statically_skipped=static, train=train)
        if cfg.add_attention:
            skip, static = skipper.next()
            h = AttentionBlock(cfg, cfg.mid_attention_groups, scale, name="attentions_0")(
                h, skip, statically_skipped=static)
        skip, static = skipper.next()
        return ResnetBlock(cfg, c, scale, name="resnets_1")(h, temb, skip, statically_skipped=static, train=train)


class UpBlock(nn.Module):
    config: UNetConfig
    out_channels: int
    attention: bool
    upsample: bool

    @nn.compact
    def __call__(self, h, residuals, temb, skipper: _Skipper, *, train: bool):
        cfg = self.config
        for j in range(cfg.layers_per_block + 1):
            h = jnp.concatenate([h, residuals.pop()], axis=-1)
            h = _resnet_and_attention(cfg, j, self.out_channels, self.attention, h, temb, skipper, train)
        if self.upsample:
            h = Upsample(self.out_channels, name="upsamplers_0")(h)
        return h


class UNet(nn.Module):
    """ε-prediction UNet: `apply({'params': p}, x [B,H,W,C], t [B] or scalar, skip_mask=None, skip=())`.

    `t` is the model time in [0, T-1] (real values allowed). `skip_mask` is a boolean [L] array (traced),
    `skip` a static tuple of block indices; both may be given (their union is skipped). Dropout is on
    only with `train=True` (pass a 'dropout' rng then).
    """

    config: UNetConfig

    @nn.compact
    def __call__(self, x, t, skip_mask=None, skip: Sequence[int] = (), *, train: bool = False):
        cfg = self.config
        num = num_blocks(cfg)
        check_input(cfg, x)
        static = _check_static_skip(skip, num)
        if skip_mask is not None:
            skip_mask = jnp.asarray(skip_mask)
            if skip_mask.shape != (num,):
                raise ValueError(f"skip_mask has shape {skip_mask.shape}; this UNet has L={num} blocks, give shape ({num},).")
            skip_mask = skip_mask.astype(bool)
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
        if cfg.center_input_sample:
            x = 2 * x - 1.0

        emb = timestep_embedding(t, cfg.block_out_channels[0], flip_sin_to_cos=cfg.flip_sin_to_cos,
                                 freq_shift=cfg.freq_shift)
        emb = TimestepEmbedding(cfg.temb_dim, name="time_embedding")(emb)

        skipper = _Skipper(skip_mask, static)
        h = _conv(cfg.block_out_channels[0], 3, "conv_in")(x)
        residuals = [h]
        levels = len(cfg.block_out_channels)
        for i, c in enumerate(cfg.block_out_channels):
            block = DownBlock(cfg, c, cfg.down_attention[i], i < levels - 1, name=f"down_blocks_{i}")
            h, outputs = block(h, emb, skipper, train=train)
            residuals.extend(outputs)
        h = MidBlock(cfg, name="mid_block")(h, emb, skipper, train=train)
        for i, c in enumerate(reversed(cfg.block_out_channels)):
            block = UpBlock(cfg, c, cfg.up_attention[i], i < levels - 1, name=f"up_blocks_{i}")
            h = block(h, residuals, emb, skipper, train=train)
        assert skipper.index == num and not residuals
        h = nn.silu(nn.GroupNorm(num_groups=cfg.norm_num_groups, epsilon=cfg.norm_eps, name="conv_norm_out")(h))
        return _conv(cfg.out_channels, 3, "conv_out")(h)


class TimestepEmbedding(nn.Module):
    features: int

    @nn.compact
    def __call__(self, emb):
        return nn.Dense(self.features, name="linear_2")(nn.silu(nn.Dense(self.features, name="linear_1")(emb)))


def check_input(config: UNetConfig, x) -> None:
    """One clear error for an image batch the network was not built for."""
    s, c = config.sample_size, config.in_channels
    if x.ndim != 4 or x.shape[1:] != (s, s, c):
        raise ValueError(
            f"UNet input has shape {tuple(x.shape)}; this model takes NHWC images of shape [B, {s}, {s}, {c}] "
            f"(sample_size={s}, in_channels={c}). Resize the images or use a model built for this size."
        )


def _check_static_skip(skip: Sequence[int], num: int) -> frozenset[int]:
    skip = tuple(int(i) for i in skip)
    bad = [i for i in skip if not 0 <= i < num]
    if bad:
        raise ValueError(f"skip indices {bad} are out of range; this UNet has blocks 0..{num - 1}.")
    return frozenset(skip)


def init_params(config: UNetConfig, key: jax.Array) -> dict:
    """Randomly initialised parameters (flax's default initialisers)."""
    s = config.sample_size
    x = jnp.zeros((1, s, s, config.in_channels), jnp.float32)
    return UNet(config).init(key, x, jnp.zeros((1,)))["params"]


def param_shapes(config: UNetConfig) -> dict:
    """The parameter tree of `config` as `jax.ShapeDtypeStruct`s, without allocating it."""
    return jax.eval_shape(lambda: init_params(config, jax.random.key(0)))


def eps_fn(config: UNetConfig, params, *, skip_mask=None, skip: Sequence[int] = ()):
    """`eps_fn(x, t)` of the network with a fixed skip mask (traced) and/or static skip list."""
    model = UNet(config)
    skip = tuple(skip)

    def fn(x, t):
        return model.apply({"params": params}, x, t, skip_mask, skip)

    return fn


def count_params(params) -> int:
    return int(sum(np.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))
