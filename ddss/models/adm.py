"""openai's ADM UNet (guided-diffusion; improved-diffusion's layout) in Flax linen, every residual and
attention block skippable, and its noisy-image classifier (`EncoderUNetModel`).

The architecture is parameterised by the keyword arguments users already pass to guided-diffusion's
`script_util.create_model` / `create_classifier` (`ADMConfig.from_flags`, `ClassifierConfig.from_flags`),
so the flags that built a checkpoint build its network here. Parameters are named after the PyTorch
state dict, a numeric index folded into the name before it ("input_blocks.1.0.in_layers.2.weight" is
`input_blocks_1_0/in_layers_2/kernel`), so `from_state_dict` converts a checkpoint by renaming and
transposing alone.

Skippable blocks are numbered 0..L-1 in execution order: each level's residual blocks (each followed
by its attention block where the level has one) and, with `resblock_updown`, its down-sampling
residual block; the middle (residual, attention, residual); then the up path in the same pattern.
The input and output layers, the time and class embeddings and plain down/up-sampling layers never
skip. A skipped residual block returns its shortcut path, resampled when the block resamples (so a
skipped up/down block still changes the resolution) and projected when the channel count changes;
a skipped attention block returns its input. As in `ddss.models.unet`, `skip_mask` (a traced
boolean [L]) computes every block and selects, so one compilation serves every mask, and `skip` (a
static tuple) leaves those blocks out of the program.

Loading (`load(checkpoint, **flags)`): the flags are those of `create_model_and_diffusion`, model
and diffusion alike (`diffusion_steps`, `noise_schedule`, `rescale_timesteps`, `predict_xstart`, ...).
An openai `.pt` state dict is read with `torch.load(weights_only=True)` when torch is installed; once
converted (`python -m ddss.models.adm CHECKPOINT.pt OUT.safetensors --flag=value ...`) the
self-describing safetensors file loads without torch and without flags. The returned `ADMModel`'s
`eps_fn(x, t, y=None)` gives ε̂ in NHWC (the first C output channels); the network sees t·1000/T when
the model was trained with `rescale_timesteps=True` (improved-diffusion's T = 4000 models).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ddss.models import unet

NUM_CLASSES = 1000
GROUPS, EPS = 32, 1e-5  # guided-diffusion's GroupNorm32 (PyTorch's default epsilon)


def default_channel_mult(image_size: int) -> tuple[float, ...]:
    """`script_util.create_model`'s channel multipliers for an image size."""
    table = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
    if image_size not in table:
        raise ValueError(f"ADM: no default channel_mult for image_size={image_size} (openai's table has "
                         f"{sorted(table)}); pass channel_mult, e.g. channel_mult='1,2'.")
    return table[image_size]


def _ints(value, name: str) -> tuple:
    if isinstance(value, (int, float)):  # one value, as `--attention_resolutions=16` parses
        return (value,)
    if isinstance(value, str):
        try:
            return tuple(float(v) if "." in v else int(v) for v in value.split(",") if v.strip())
        except ValueError:
            raise ValueError(f"ADM: {name}={value!r} must be comma-separated numbers, e.g. '16,8'.") from None
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class ADMConfig:
    """The guided-diffusion `UNetModel` built by `create_model(**flags)`; `attention_ds` holds the
    down-sampling rates with attention (create_model's image_size // resolution)."""

    image_size: int = 64
    num_channels: int = 128
    num_res_blocks: int = 2
    channel_mult: tuple = (1, 2, 3, 4)
    learn_sigma: bool = False
    class_cond: bool = False
    attention_ds: tuple[int, ...] = (4, 8)
    num_heads: int = 1
    num_head_channels: int = -1
    num_heads_upsample: int = -1
    use_scale_shift_norm: bool = False
    dropout: float = 0.0
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    in_channels: int = 3
    num_classes: int = NUM_CLASSES

    FLAGS = ("image_size", "num_channels", "num_res_blocks", "channel_mult", "learn_sigma", "class_cond",
             "attention_resolutions", "num_heads", "num_head_channels", "num_heads_upsample",
             "use_scale_shift_norm", "dropout", "resblock_updown", "use_new_attention_order", "use_checkpoint",
             "use_fp16")

    def __post_init__(self):
        for c in self.level_channels:
            if c % GROUPS:
                raise ValueError(f"ADM: a level has {c} channels, not a multiple of GroupNorm's {GROUPS} groups; "
                                 "check num_channels and channel_mult.")
        for c in self.attention_channels:
            heads = self.heads(c)
            if heads < 1 or c % heads:
                raise ValueError(f"ADM: {c} attention channels do not split into {heads} heads; check num_heads "
                                 "and num_head_channels.")

    @classmethod
    def from_flags(cls, **flags) -> "ADMConfig":
        """Keyword arguments of guided-diffusion's `script_util.create_model` (strings as on its command
        line: attention_resolutions='16,8', channel_mult='' for the image size's default)."""
        unknown = sorted(set(flags) - set(cls.FLAGS) - {"in_channels", "num_classes"})
        if unknown:
            raise ValueError(f"ADM: unknown flags {unknown}; create_model takes {list(cls.FLAGS)}.")
        flags.pop("use_fp16", None)  # float16 weights are cast to float32 on load: the function is the same
        flags.pop("use_checkpoint", None)  # PyTorch's activation checkpointing: no effect on the function
        image_size = int(flags.get("image_size", 64))
        mult = flags.pop("channel_mult", "")
        flags["channel_mult"] = _ints(mult, "channel_mult") if mult not in ("", None, ()) else \
            default_channel_mult(image_size)
        res = _ints(flags.pop("attention_resolutions", "16"), "attention_resolutions")
        flags["attention_ds"] = tuple(image_size // int(r) for r in res)
        return cls(**flags)

    @property
    def out_channels(self) -> int:
        return 2 * self.in_channels if self.learn_sigma else self.in_channels

    @property
    def temb_dim(self) -> int:
        return 4 * self.num_channels

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(int(m * self.num_channels) for m in self.channel_mult)

    @property
    def attention_channels(self) -> tuple[int, ...]:
        return tuple(c for i, c in enumerate(self.level_channels) if 2 ** i in self.attention_ds) + \
            (self.level_channels[-1],)

    def heads(self, channels: int, *, upsample: bool = False) -> int:
        if self.num_head_channels != -1:
            return channels // self.num_head_channels
        if upsample and self.num_heads_upsample != -1:
            return self.num_heads_upsample
        return self.num_heads

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ADMConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in names})


def timestep_embedding(t, dim: int) -> jax.Array:
    """guided-diffusion's `nn.timestep_embedding`: [cos, sin] of t·10000^(-i/half)."""
    return unet.timestep_embedding(t, dim, flip_sin_to_cos=True, freq_shift=0.0)


def _conv(features: int, kernel: int, name: str, stride: int = 1) -> nn.Conv:
    pad = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)), name=name)


def _norm(name: str) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=GROUPS, epsilon=EPS, name=name)


def _resample(x, mode: str | None):
    if mode == "up":
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    if mode == "down":  # AvgPool2d(2, 2)
        b, h, w, c = x.shape
        return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    return x


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, the time embedding added (or FiLM scale/shift), GroupNorm-SiLU-dropout-conv,
    plus the shortcut; `resample` 'up'/'down' resamples both paths (resblock_updown)."""

    out_channels: int
    use_scale_shift_norm: bool
    dropout: float = 0.0
    resample: str | None = None

    @nn.compact
    def __call__(self, x, emb, skip=None, *, statically_skipped: bool = False, train: bool = False):
        x_in = _resample(x, self.resample)
        shortcut = x_in
        if x.shape[-1] != self.out_channels:
            shortcut = _conv(self.out_channels, 1, "skip_connection")(x_in)
        if statically_skipped:
            return shortcut
        h = nn.silu(_norm("in_layers_0")(x))
        h = _conv(self.out_channels, 3, "in_layers_2")(_resample(h, self.resample))
        emb_out = nn.Dense(self.out_channels * (2 if self.use_scale_shift_norm else 1), name="emb_layers_1")(
            nn.silu(emb))[:, None, None, :]
        if self.use_scale_shift_norm:
            scale, shift = jnp.split(emb_out, 2, axis=-1)
            h = _norm("out_layers_0")(h) * (1 + scale) + shift
        else:
            h = _norm("out_layers_0")(h + emb_out)
        h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
        out = shortcut + _conv(self.out_channels, 3, "out_layers_3")(h)
        return out if skip is None else jnp.where(skip, shortcut, out)


def qkv_attention(qkv, heads: int, *, new_order: bool):
    """[B, T, 3C] -> [B, T, C]: legacy order splits heads, then q/k/v within each head
    (`QKVAttentionLegacy`, improved-diffusion's); the new order splits q/k/v first (`QKVAttention`)."""
    b, t, width = qkv.shape
    ch = width // (3 * heads)
    parts = qkv.reshape(b, t, 3, heads, ch) if new_order else qkv.reshape(b, t, heads, 3, ch).swapaxes(2, 3)
    q, k, v = parts[:, :, 0], parts[:, :, 1], parts[:, :, 2]  # [B, T, H, ch]
    logits = jnp.einsum("bthc,bshc->bhts", q, k) / math.sqrt(ch)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bhts,bshc->bthc", weights, v).reshape(b, t, heads * ch)


class AttentionBlock(nn.Module):
    heads: int
    new_order: bool

    @nn.compact
    def __call__(self, x, skip=None, *, statically_skipped: bool = False):
        if statically_skipped:
            return x
        b, hgt, wid, c = x.shape
        h = _norm("norm")(x).reshape(b, hgt * wid, c)
        h = qkv_attention(nn.Dense(3 * c, name="qkv")(h), self.heads, new_order=self.new_order)
        out = x + nn.Dense(c, name="proj_out")(h).reshape(b, hgt, wid, c)
        return out if skip is None else jnp.where(skip, x, out)


class Downsample(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x):
        return _conv(self.channels, 3, "op", stride=2)(x)


class Upsample(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x):
        return _conv(self.channels, 3, "conv")(_resample(x, "up"))


@dataclasses.dataclass(frozen=True)
class Layer:
    """One layer of the network in execution order: `kind` in {'conv_in', 'resnet', 'attention',
    'down', 'up'}, the flax name, its resolution and channels; `block` is its skippable index or None."""

    kind: str
    name: str
    part: str  # 'input', 'middle' or 'output'
    resolution: int
    in_channels: int
    out_channels: int
    resample: str | None = None
    heads: int = 0
    block: int | None = None
    pushes: bool = False  # input blocks: the output is kept for the skip concatenation
    pops: bool = False  # output blocks: a kept output is concatenated first


def layers(config, *, encoder: bool = False) -> tuple[Layer, ...]:
    """The layers of the UNet (or, with `encoder`, of the classifier's down path and middle), in the
    order they run, with the names of guided-diffusion's modules."""
    out: list[Layer] = []
    blocks = [0]

    def add(kind, name, part, res, cin, cout, **kw):
        skippable = kind in ("resnet", "attention")
        out.append(Layer(kind, name, part, res, cin, cout, block=blocks[0] if skippable else None, **kw))
        if skippable:
            blocks[0] += 1

    chans, res = config.level_channels, config.image_size
    ch = chans[0]
    add("conv_in", "input_blocks_0_0", "input", res, config.in_channels, ch, pushes=not encoder)
    kept, idx, ds = [ch], 1, 1
    for level, cout in enumerate(chans):
        for _ in range(config.num_res_blocks):
            add("resnet", f"input_blocks_{idx}_0", "input", res, ch, cout, pushes=not encoder and ds not in
                config.attention_ds)
            ch = cout
            if ds in config.attention_ds:
                add("attention", f"input_blocks_{idx}_1", "input", res, ch, ch, heads=config.heads(ch),
                    pushes=not encoder)
            kept.append(ch)
            idx += 1
        if level != len(chans) - 1:
            if config.resblock_updown:
                add("resnet", f"input_blocks_{idx}_0", "input", res, ch, ch, resample="down", pushes=not encoder)
            else:
                add("down", f"input_blocks_{idx}_0", "input", res, ch, ch, pushes=not encoder)
            kept.append(ch)
            idx += 1
            ds, res = ds * 2, res // 2
    add("resnet", "middle_block_0", "middle", res, ch, ch)
    add("attention", "middle_block_1", "middle", res, ch, ch, heads=config.heads(ch))
    add("resnet", "middle_block_2", "middle", res, ch, ch)
    if encoder:
        return tuple(out)
    idx = 0
    for level, cout in list(enumerate(chans))[::-1]:
        for i in range(config.num_res_blocks + 1):
            cin = ch + kept.pop()
            add("resnet", f"output_blocks_{idx}_0", "output", res, cin, cout, pops=True)
            ch, sub = cout, 1
            if ds in config.attention_ds:
                add("attention", f"output_blocks_{idx}_1", "output", res, ch, ch, heads=config.heads(ch, upsample=True))
                sub += 1
            if level and i == config.num_res_blocks:
                kind = "resnet" if config.resblock_updown else "up"
                add(kind, f"output_blocks_{idx}_{sub}", "output", res, ch, ch, resample="up")
                ds, res = ds // 2, res * 2
            idx += 1
    return tuple(out)


def _resnet_macs(config, res_in: int, res_out: int, cin: int, cout: int) -> int:
    temb = config.temb_dim * cout * (2 if config.use_scale_shift_norm else 1)
    return res_out * res_out * 9 * (cin * cout + cout * cout) + temb


def _attention_macs(res: int, c: int) -> int:
    n = res * res
    return 4 * n * c * c + 2 * n * n * c


def blocks(config: ADMConfig, *, encoder: bool = False) -> tuple[unet.Block, ...]:
    """The skippable blocks in index order, with the multiply-accumulates each one's residual branch costs."""
    out = []
    for layer in layers(config, encoder=encoder):
        if layer.block is None:
            continue
        if layer.kind == "resnet":
            res_out = {"up": layer.resolution * 2, "down": layer.resolution // 2}.get(layer.resample, layer.resolution)
            macs = _resnet_macs(config, layer.resolution, res_out, layer.in_channels, layer.out_channels)
        else:
            macs = _attention_macs(layer.resolution, layer.out_channels)
        out.append(unet.Block(layer.block, layer.kind, (layer.name,), layer.resolution, layer.in_channels,
                              layer.out_channels, macs))
    return tuple(out)


def num_blocks(config: ADMConfig, *, encoder: bool = False) -> int:
    return len(blocks(config, encoder=encoder))


def network_macs(config: ADMConfig) -> int:
    """Multiply-accumulates of one full forward pass per image (skippable blocks and the fixed layers)."""
    total = sum(b.macs for b in blocks(config))
    s, c0 = config.image_size, config.level_channels[0]
    total += s * s * 9 * (config.in_channels * c0 + c0 * config.out_channels)
    total += config.num_channels * config.temb_dim + config.temb_dim ** 2
    for layer in layers(config):
        if layer.kind == "resnet" and layer.in_channels != layer.out_channels:
            total += layer.resolution ** 2 * layer.in_channels * layer.out_channels
        elif layer.kind == "down":
            total += (layer.resolution // 2) ** 2 * 9 * layer.in_channels * layer.out_channels
        elif layer.kind == "up":
            total += (layer.resolution * 2) ** 2 * 9 * layer.in_channels * layer.out_channels
    return total


def _check_mask(skip_mask, num: int):
    if skip_mask is None:
        return None
    skip_mask = jnp.asarray(skip_mask)
    if skip_mask.shape != (num,):
        raise ValueError(f"skip_mask has shape {skip_mask.shape}; this network has L={num} blocks, give shape ({num},).")
    return skip_mask.astype(bool)


def _check_input(config, x) -> None:
    s, c = config.image_size, config.in_channels
    if x.ndim != 4 or x.shape[1:] != (s, s, c):
        raise ValueError(f"ADM input has shape {tuple(x.shape)}; this model takes NHWC images of shape "
                         f"[B, {s}, {s}, {c}] (image_size={s}). Resize the images or use a model built for this size.")


def _run_layers(config, seq, h, emb, skip_mask, static, train, kept):
    for layer in seq:
        if layer.pops:
            h = jnp.concatenate([h, kept.pop()], axis=-1)
        skip = None if (layer.block is None or skip_mask is None) else skip_mask[layer.block]
        stat = layer.block is not None and layer.block in static
        if layer.kind == "conv_in":
            h = _conv(layer.out_channels, 3, layer.name)(h)
        elif layer.kind == "resnet":
            h = ResBlock(layer.out_channels, config.use_scale_shift_norm, config.dropout, layer.resample,
                         name=layer.name)(h, emb, skip, statically_skipped=stat, train=train)
        elif layer.kind == "attention":
            h = AttentionBlock(layer.heads, config.use_new_attention_order, name=layer.name)(
                h, skip, statically_skipped=stat)
        elif layer.kind == "down":
            h = Downsample(layer.out_channels, name=layer.name)(h)
        else:
            h = Upsample(layer.out_channels, name=layer.name)(h)
        if layer.pushes:
            kept.append(h)
    return h


class ADMNet(nn.Module):
    """`apply({'params': p}, x [B,H,W,C], t [B] or scalar, y=None, skip_mask=None, skip=())` -> the raw
    output [B,H,W,C or 2C] (ε, then the variance interpolation values with learn_sigma). `t` is the
    network's own time input (already rescaled where the model expects it); `y` [B] int class labels,
    required exactly when `class_cond`."""

    config: ADMConfig

    @nn.compact
    def __call__(self, x, t, y=None, skip_mask=None, skip: Sequence[int] = (), *, train: bool = False):
        cfg = self.config
        _check_input(cfg, x)
        if (y is None) == cfg.class_cond:
            raise ValueError("ADM: pass class labels y exactly when the model is class-conditional "
                             f"(class_cond={cfg.class_cond}).")
        if y is not None:
            if jnp.ndim(y) != 1 or jnp.shape(y)[0] != x.shape[0]:
                raise ValueError(f"ADM: class labels y must be [B] = [{x.shape[0]}], one per image; got shape "
                                 f"{jnp.shape(y)}.")
            if not isinstance(y, jax.core.Tracer):  # concrete labels are checked; traced ones cannot be
                from ddss.samplers import conditioning

                conditioning.check(y, cfg.num_classes, x.shape[0], what="ADM class labels y")
        seq = layers(cfg)
        num = sum(layer.block is not None for layer in seq)
        static, skip_mask = unet._check_static_skip(skip, num), _check_mask(skip_mask, num)
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
        emb = timestep_embedding(t, cfg.num_channels)
        emb = nn.Dense(cfg.temb_dim, name="time_embed_2")(nn.silu(nn.Dense(cfg.temb_dim, name="time_embed_0")(emb)))
        if cfg.class_cond:
            emb = emb + nn.Embed(cfg.num_classes, cfg.temb_dim, name="label_emb")(jnp.asarray(y, jnp.int32))
        kept: list = []
        h = _run_layers(cfg, seq, x, emb, skip_mask, static, train, kept)
        assert not kept
        h = nn.silu(_norm("out_0")(h))
        return _conv(cfg.out_channels, 3, "out_2")(h)


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """guided-diffusion's noisy classifier (`EncoderUNetModel`) as `create_classifier(**flags)` builds it."""

    image_size: int = 64
    classifier_width: int = 128
    classifier_depth: int = 2
    attention_ds: tuple[int, ...] = (2, 4, 8)
    classifier_use_scale_shift_norm: bool = True
    classifier_resblock_updown: bool = True
    classifier_pool: str = "attention"
    num_head_channels: int = 64
    channel_mult: tuple = ()  # () as create_classifier: the image size's default
    in_channels: int = 3
    num_classes: int = NUM_CLASSES

    FLAGS = ("image_size", "classifier_width", "classifier_depth", "classifier_attention_resolutions",
             "classifier_use_scale_shift_norm", "classifier_resblock_updown", "classifier_pool",
             "classifier_use_fp16")

    def __post_init__(self):
        if self.classifier_pool not in ("attention", "adaptive"):
            raise ValueError(f"ADM classifier: pool {self.classifier_pool!r} is not supported; openai's released "
                             "classifiers use 'attention' (and 'adaptive' is supported).")
        _ = self.unet  # building the shared body checks its channels and heads

    @classmethod
    def from_flags(cls, **flags) -> "ClassifierConfig":
        unknown = sorted(set(flags) - set(cls.FLAGS) - {"in_channels", "num_classes", "num_head_channels",
                                                         "channel_mult"})
        if unknown:
            raise ValueError(f"ADM classifier: unknown flags {unknown}; create_classifier takes {list(cls.FLAGS)}.")
        flags.pop("classifier_use_fp16", None)
        image_size = int(flags.get("image_size", 64))
        res = _ints(flags.pop("classifier_attention_resolutions", "32,16,8"), "classifier_attention_resolutions")
        flags["attention_ds"] = tuple(image_size // int(r) for r in res)
        if "channel_mult" in flags:
            flags["channel_mult"] = _ints(flags["channel_mult"], "channel_mult")
        return cls(**flags)

    @property
    def unet(self) -> ADMConfig:
        """The shared down path and middle, as an ADMConfig (channel_mult from the image size)."""
        return ADMConfig(image_size=self.image_size, num_channels=self.classifier_width,
                         num_res_blocks=self.classifier_depth,
                         channel_mult=self.channel_mult or default_channel_mult(self.image_size),
                         attention_ds=self.attention_ds, num_head_channels=self.num_head_channels,
                         use_scale_shift_norm=self.classifier_use_scale_shift_norm,
                         resblock_updown=self.classifier_resblock_updown, in_channels=self.in_channels)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class AttentionPool(nn.Module):
    """CLIP's attention pooling (`AttentionPool2d`): the mean token attends to all positions."""

    spatial: int
    channels: int
    head_channels: int
    out_channels: int

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        x = jnp.concatenate([x.mean(axis=1, keepdims=True), x], axis=1)
        pos = self.param("positional_embedding", nn.initializers.normal(c ** -0.5), (h * w + 1, c))
        x = x + pos[None]
        x = qkv_attention(nn.Dense(3 * c, name="qkv_proj")(x), c // self.head_channels, new_order=True)
        return nn.Dense(self.out_channels, name="c_proj")(x)[:, 0]


class ADMClassifier(nn.Module):
    """`apply({'params': p}, x [B,H,W,C], t [B]) -> logits [B, num_classes]`."""

    config: ClassifierConfig

    @nn.compact
    def __call__(self, x, t):
        cfg, body = self.config, self.config.unet
        _check_input(body, x)
        t = jnp.broadcast_to(jnp.asarray(t, jnp.float32), (x.shape[0],))
        emb = timestep_embedding(t, body.num_channels)
        emb = nn.Dense(body.temb_dim, name="time_embed_2")(nn.silu(nn.Dense(body.temb_dim, name="time_embed_0")(emb)))
        h = _run_layers(body, layers(body, encoder=True), x, emb, None, frozenset(), False, [])
        h = nn.silu(_norm("out_0")(h))
        if cfg.classifier_pool == "adaptive":
            h = h.mean(axis=(1, 2), keepdims=True)
            return _conv(cfg.num_classes, 1, "out_3")(h)[:, 0, 0]
        return AttentionPool(h.shape[1], h.shape[-1], cfg.num_head_channels, cfg.num_classes, name="out_2")(h)


# --------------------------------------------------------------------------------------------------
# PyTorch state dicts


def flax_path(torch_key: str) -> tuple[tuple[str, ...], str]:
    """'input_blocks.1.0.in_layers.2.weight' -> (('input_blocks_1_0', 'in_layers_2'), 'weight')."""
    parts, path = torch_key.split("."), []
    for p in parts[:-1]:
        if p.isdigit() and path:
            path[-1] = f"{path[-1]}_{p}"
        else:
            path.append(p)
    return tuple(path), parts[-1]


def from_state_dict(state: dict[str, np.ndarray], expected: dict) -> dict:
    """A guided-diffusion / improved-diffusion state dict (name -> array) as this module's params,
    checked against `expected` (the param tree's shapes): one error naming what differs."""
    from ddss.models import params_io

    params: dict = {}
    for key, value in state.items():
        value = np.asarray(value, np.float32)
        path, leaf = flax_path(key)
        if leaf == "positional_embedding":
            name, value = leaf, value.T  # [C, HW+1] -> [HW+1, C]
        elif leaf == "weight":
            if value.ndim == 4:  # conv OIHW -> HWIO
                name, value = "kernel", value.transpose(2, 3, 1, 0)
            elif value.ndim == 3:  # 1×1 conv1d [O, I, 1] -> dense [I, O]
                name, value = "kernel", value[:, :, 0].T
            elif value.ndim == 2 and path[-1] == "label_emb":
                name = "embedding"
            elif value.ndim == 2:
                name, value = "kernel", value.T
            else:  # GroupNorm
                name = "scale"
        elif leaf == "bias":
            name = "bias"
        else:
            raise params_io.WeightFileError(f"unexpected tensor {key!r} in an ADM state dict.")
        node = params
        for p in path:
            node = node.setdefault(p, {})
        node[name] = value
    params_io.check_against(params, expected, source="ADM checkpoint")
    return params


def init_params(config: ADMConfig, key: jax.Array) -> dict:
    s = config.image_size
    x = jnp.zeros((1, s, s, config.in_channels), jnp.float32)
    y = jnp.zeros((1,), jnp.int32) if config.class_cond else None
    return ADMNet(config).init(key, x, jnp.zeros((1,)), y)["params"]


def init_classifier_params(config: ClassifierConfig, key: jax.Array) -> dict:
    s = config.image_size
    return ADMClassifier(config).init(key, jnp.zeros((1, s, s, config.in_channels)), jnp.zeros((1,)))["params"]


def param_shapes(config: ADMConfig) -> dict:
    return jax.eval_shape(lambda: init_params(config, jax.random.key(0)))


def classifier_param_shapes(config: ClassifierConfig) -> dict:
    return jax.eval_shape(lambda: init_classifier_params(config, jax.random.key(0)))


# --------------------------------------------------------------------------------------------------
# Models: network, parameters, schedule


DIFFUSION_FLAGS = ("diffusion_steps", "noise_schedule", "rescale_timesteps", "predict_xstart", "timestep_respacing",
                   "use_kl", "rescale_learned_sigmas")


def schedule_spec(noise_schedule: str = "linear", diffusion_steps: int = 1000) -> dict:
    """`gaussian_diffusion.get_named_beta_schedule` as a ddss schedule spec: openai's linear schedule is
    Ho et al.'s, scaled by 1000/T so it stays similar at any T; the cosine one is Nichol & Dhariwal's."""
    T = int(diffusion_steps)
    if noise_schedule == "linear":
        return {"kind": "linear_beta", "num_timesteps": T, "beta_start": 1000 / T * 1e-4, "beta_end": 1000 / T * 0.02}
    if noise_schedule == "cosine":
        return {"kind": "cosine", "num_timesteps": T}
    raise ValueError(f"ADM: noise_schedule={noise_schedule!r}; openai's models use 'linear' or 'cosine'.")


@dataclasses.dataclass(frozen=True)
class ADMModel:
    """An ADM / improved-DDPM model: network config, parameters, schedule, and how its time input is scaled.

    `eps_fn(x, t, y=None, skip_mask=None, skip=())` is ε̂ (NHWC, the first C output channels);
    `variance_fn` the last C of a learned-sigma model (improved-DDPM's interpolation values v: the
    log variance is v·log β_t + (1 − v)·log β̃_t); `model_output` all of them."""

    config: ADMConfig
    params: Any
    schedule_spec: dict
    rescale_timesteps: bool = False
    prediction: str = "eps"  # "eps", or "x0" for a model trained with predict_xstart=True
    metadata: dict = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def schedule(self):  # built once per model, not at every eps_fn call
        from ddss.models import pretrained

        return pretrained.schedule_from_spec(self.schedule_spec)

    @property
    def learned_variance(self) -> bool:
        return self.config.learn_sigma

    @property
    def class_cond(self) -> bool:
        return self.config.class_cond

    @property
    def blocks(self) -> tuple[unet.Block, ...]:
        return blocks(self.config)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def network_macs(self) -> int:
        return network_macs(self.config)

    def network_time(self, t):
        """What the network is fed for sampler time t: t·1000/T under rescale_timesteps, else t."""
        t = jnp.asarray(t, jnp.float32)
        return t * (1000.0 / self.schedule_spec["num_timesteps"]) if self.rescale_timesteps else t

    def model_output(self, x, t, y=None, skip_mask=None, skip: Sequence[int] = (), *, params=None):
        net = ADMNet(self.config)
        return net.apply({"params": self.params if params is None else params}, x, self.network_time(t), y,
                         skip_mask, tuple(skip))

    def eps_fn(self, x, t, y=None, skip_mask=None, skip: Sequence[int] = (), *, params=None):
        from ddss.models import adapters

        c = self.config.in_channels
        first = lambda x_, t_: self.model_output(x_, t_, y, skip_mask, skip, params=params)[..., :c]
        return adapters.as_eps_fn(first, self.schedule, self.prediction)(x, t)

    def variance_fn(self, x, t, y=None, skip_mask=None, skip: Sequence[int] = (), *, params=None):
        if not self.learned_variance:
            raise ValueError("This ADM model was built with learn_sigma=False: it outputs no variance channels.")
        c = self.config.in_channels
        return self.model_output(x, t, y, skip_mask, skip, params=params)[..., c:]


def _split_flags(flags: dict) -> tuple[dict, dict]:
    model = {k: v for k, v in flags.items() if k not in DIFFUSION_FLAGS}
    diffusion = {k: v for k, v in flags.items() if k in DIFFUSION_FLAGS}
    for name in ("use_kl", "rescale_learned_sigmas", "timestep_respacing"):
        diffusion.pop(name, None)  # training losses, and the sampler's own respacing: not the network's function
    return model, diffusion


def _diagnose(state: dict[str, np.ndarray], config) -> str | None:
    """The create_model flag a state dict contradicts, in one sentence (None when none is evident).
    The head count and the attention order leave no trace in the weights: those flags must be right."""
    body = config.unet if isinstance(config, ClassifierConfig) else config
    if "time_embed.0.weight" in state:
        width = state["time_embed.0.weight"].shape[1]
        if width != body.num_channels:
            name = "classifier_width" if body is not config else "num_channels"
            return f"its time embedding is {width} wide: {name}={width}, not {body.num_channels}"
    if isinstance(config, ADMConfig):
        if ("label_emb.weight" in state) != config.class_cond:
            return ("it has class embeddings (label_emb): pass class_cond=True" if config.class_cond is False
                    else "it has no class embeddings (label_emb): pass class_cond=False")
        if "out.2.weight" in state and state["out.2.weight"].shape[0] != config.out_channels:
            return (f"it outputs {state['out.2.weight'].shape[0]} channels: learn_sigma="
                    f"{state['out.2.weight'].shape[0] == 2 * config.in_channels}")
    emb = state.get("input_blocks.1.0.emb_layers.1.weight")
    if emb is not None:
        scale_shift = emb.shape[0] == 2 * body.level_channels[0]
        if scale_shift != body.use_scale_shift_norm:
            return (f"its residual blocks use{'' if scale_shift else ' no'} FiLM scale/shift: "
                    f"use_scale_shift_norm={scale_shift}")
    updown = not any(k.endswith(".op.weight") for k in state)  # a plain Downsample is a strided conv "op"
    if len(body.channel_mult) > 1 and updown != body.resblock_updown:
        return f"it resamples with {'residual blocks' if updown else 'convolutions'}: resblock_updown={updown}"
    blocks_in = len({k.split(".")[1] for k in state if k.startswith("input_blocks.")})
    want = 1 + len(body.channel_mult) * body.num_res_blocks + len(body.channel_mult) - 1
    if blocks_in != want:
        return (f"it has {blocks_in} input blocks where num_res_blocks={body.num_res_blocks} and channel_mult="
                f"{body.channel_mult} give {want}: check num_res_blocks, channel_mult and image_size")
    attn = sorted({int(k.split(".")[1]) for k in state if k.startswith("input_blocks.") and ".1.qkv." in k})
    expect = {layer.name for layer in layers(body, encoder=True) if layer.kind == "attention" and layer.part == "input"}
    if {f"input_blocks_{i}_1" for i in attn} != expect:
        return "its attention layers sit at other resolutions: check attention_resolutions (and image_size)"
    return None


def _state_to_params(state, config, shapes, source: str) -> dict:
    from ddss.models import params_io

    reason = _diagnose(state, config)
    if reason:
        raise params_io.WeightFileError(f"{source} does not match the flags given: {reason}.")
    try:
        return from_state_dict(state, shapes)
    except params_io.WeightFileError as e:
        raise params_io.WeightFileError(f"{source} does not match the flags given ({str(e)[:300]}).") from None


def _read_checkpoint(path: str, *, convert: str) -> tuple[dict | None, tuple]:
    """(state dict or None, params or None, metadata): a .pt state dict, or a converted safetensors file."""
    from ddss.models import convert as convert_lib, params_io

    if not os.path.isfile(path):
        raise params_io.WeightFileError(f"ADM checkpoint not found: {path}. openai's files are e.g. "
                                        "64x64_diffusion.pt, 64x64_classifier.pt, imagenet64_uncond_100M_1500K.pt.")
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file opens with its JSON header's length (8 bytes, little-endian), then "{"; its first
    # byte can be 0x80, as a legacy pickle's is, so that test comes first.
    safetensors = len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path)
    if not safetensors and (head[:2] == b"PK" or head[:1] == b"\x80"):  # torch.save's zip, or a legacy pickle
        again = f"Download {os.path.basename(path)} again (an interrupted download leaves it cut short)"
        state = convert_lib.read_torch_file(path, convert=convert, again=again, expected="a state dict of tensors",
                                            where="Pass the checkpoint file openai released.",
                                            trusted="convert it where you trust it")
        return state, ()
    params, meta = params_io.load(path, what="ADM weight file")
    return None, (params, meta)


def _conversion_command(path: str, flags: dict, *, classifier: bool = False) -> str:
    out = os.path.splitext(path)[0] + ".safetensors"
    args = " ".join(["--classifier"] * classifier + [f"--{k}={v}" for k, v in flags.items()])
    return f"python -m ddss.models.adm {path} {out} {args}".strip()


def _open(path: str, flags: dict, kind: str) -> tuple[str, dict | None, tuple]:
    """(path, state dict, ()) of an openai .pt file, or (path, None, (params, metadata)) of a file
    `python -m ddss.models.adm` converted, checked to hold a `kind` network."""
    from ddss.models import params_io

    path = os.path.expanduser(path)
    state, converted = _read_checkpoint(path, convert=_conversion_command(path, flags,
                                                                          classifier=kind == "adm_classifier"))
    if state is None:
        params, meta = converted
        if meta.get("kind") != kind:
            what = "an ADM classifier" if kind == "adm_classifier" else "an ADM"
            raise params_io.WeightFileError(f"{path} is not {what} weight file (written by `python -m ddss.models.adm`).")
        params_io.check_finite(params, source=path)
    return path, state, converted


def load(path: str, **flags) -> ADMModel:
    """An openai ADM / improved-DDPM checkpoint, with the `create_model_and_diffusion` flags that built it
    (a converted .safetensors file needs none: it records them)."""
    from ddss.models import params_io

    path, state, converted = _open(path, flags, "adm")
    if state is None:
        params, meta = converted
        config = ADMConfig.from_dict(meta["config"])
        params_io.check_against(params, param_shapes(config), source=path)
        return ADMModel(config, params, meta["schedule"], bool(meta.get("rescale_timesteps")),
                        meta.get("prediction", "eps"), {"source": path, **meta.get("flags", {})})
    model_flags, diffusion = _split_flags(dict(flags))
    config = ADMConfig.from_flags(**model_flags)
    params = _state_to_params(state, config, param_shapes(config), path)
    params_io.check_finite(params, source=path)
    spec = schedule_spec(diffusion.get("noise_schedule", "linear"), diffusion.get("diffusion_steps", 1000))
    return ADMModel(config, params, spec, bool(diffusion.get("rescale_timesteps", False)),
                    "x0" if diffusion.get("predict_xstart") else "eps", {"source": path, **flags})


def save(path: str, model: ADMModel) -> None:
    """A self-describing safetensors file: `load(path)` reads it without torch or flags."""
    from ddss.models import params_io

    params_io.save(path, model.params, {"kind": "adm", "config": model.config.to_dict(), "schedule": model.schedule_spec,
                                        "rescale_timesteps": model.rescale_timesteps, "prediction": model.prediction,
                                        "flags": {k: v for k, v in model.metadata.items() if k != "source"}})


def load_classifier(path: str, **flags) -> tuple[ClassifierConfig, dict]:
    """openai's noisy classifier (e.g. 64x64_classifier.pt) with its `create_classifier` flags ->
    (config, params); `logits_fn(config, params)(x, t)` gives its logits."""
    from ddss.models import params_io

    path, state, converted = _open(path, flags, "adm_classifier")
    if state is None:
        params, meta = converted
        config = ClassifierConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in meta["config"].items()})
        params_io.check_against(params, classifier_param_shapes(config), source=path)
        return config, params
    config = ClassifierConfig.from_flags(**flags)
    params = _state_to_params(state, config, classifier_param_shapes(config), path)
    params_io.check_finite(params, source=path)
    return config, params


def logits_fn(config: ClassifierConfig, params):
    """`logits(x [B,H,W,C] in [-1, 1], t [B]) -> [B, num_classes]` of the noisy classifier."""
    net = ADMClassifier(config)
    return lambda x, t: net.apply({"params": params}, x, t)


def _parse_flag(value: str):
    import ast

    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def main(argv: list[str]) -> None:
    """python -m ddss.models.adm CHECKPOINT.pt OUT.safetensors [--classifier] --flag=value ..."""
    positional = [a for a in argv[1:] if not a.startswith("--")]
    options = dict(a[2:].split("=", 1) for a in argv[1:] if a.startswith("--") and "=" in a)
    classifier = "--classifier" in argv
    if len(positional) != 2:
        raise SystemExit("usage: python -m ddss.models.adm CHECKPOINT.pt OUT.safetensors [--classifier] "
                         "--image_size=64 --num_channels=192 ... (the flags that built the checkpoint)")
    flags = {k: _parse_flag(v) for k, v in options.items()}
    from ddss.models import params_io

    if classifier:
        config, params = load_classifier(positional[0], **flags)
        params_io.save(positional[1], params, {"kind": "adm_classifier", "config": config.to_dict(), "flags": flags})
    else:
        model = load(positional[0], **flags)
        save(positional[1], model)
        print(f"wrote {positional[1]}: L={model.num_blocks} blocks, {unet.count_params(model.params):,} parameters")


if __name__ == "__main__":
    import sys

    main(sys.argv)
