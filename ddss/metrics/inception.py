"""Inception-v3 as used for FID: pytorch-fid's port of the TF 2015-12-05 graph, in Flax.

This is not torchvision's Inception-v3. The FID graph differs in four places, all reproduced:
  * Mixed_5b/5c/5d (A), 6b-6e (C) and 7b (E_1) average-pool their pool branch without counting
    the zero padding (TF's `avg_pool` semantics, `count_include_pad=False`);
  * Mixed_7c (E_2) max-pools its pool branch instead;
  * the classifier has 1008 outputs;
  * BatchNorm eps is 1e-3.

Input: NHWC images in [-1, 1], any size. They are resized to 299×299 with bilinear interpolation
exactly as `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` does (no
anti-aliasing, source index clamped at 0), the resize pytorch-fid applies. The resize is linear and
each output pixel's weights sum to 1, so resizing [-1, 1] images equals pytorch-fid's resize of
[0, 1] images followed by its 2x-1. Everything is differentiable: the DDSS loss back-propagates
through it.

Outputs (`apply(params, images, outputs=...)`), all float32:
  "pool"             [N, 2048]  final average pool, the FID features
  "logits"           [N, 1008]  fc(pool) with bias
  "logits_unbiased"  [N, 1008]  fc(pool) without bias (what the original Inception Score used)
  "pool_64", "pool_192", "pool_768"  spatial means of pytorch-fid's blocks 0, 1, 2 (its --dims 64/192/768)

Weights: the file users already have from pytorch-fid, `pt_inception-2015-12-05-6726825d.pth`
(downloaded once by pytorch-fid into ~/.cache/torch/hub/checkpoints/). `load_params()` finds it,
checks its sha256 prefix, reads it with `torch.load(weights_only=True)` (no pickle execution), and
`python -m ddss.metrics.inception convert PTH OUT.safetensors` writes a torch-free copy that loads
with numpy only.

Other Inception-v3 weights of this architecture (a retrained or fine-tuned .pth) are refused by the
hash check unless asked for: `ddss.metrics.features.get("inception", weights=PATH, check_hash=False)`
(`load_params(PATH, check_hash=False)` here), `--config.features.check_hash=False` (or
`--config.eval_features.check_hash=False`) in the experiment configs, and `--no-check-hash` for
`convert`. Scores in such a space are not FID as published; the extractor's `weights_sha256` records
which file it was.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import re
import zipfile
from typing import Any, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from ddss import parallel
from ddss.models import params_io

FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   "pt_inception-2015-12-05-6726825d.pth")
PTH_NAME = "pt_inception-2015-12-05-6726825d.pth"
SHA256_PREFIX = "6726825d"
CONVERTED_NAME = "inception-2015-12-05-fid.safetensors"
FORMAT = "ddss-inception-fid"
ENV_VAR = "DDSS_INCEPTION_WEIGHTS"
INPUT_SIZE = 299
BN_EPS = 1e-3
OUTPUTS = ("pool", "logits", "logits_unbiased", "pool_64", "pool_192", "pool_768")
_DEPTH = {"pool_64": 0, "pool_192": 1, "pool_768": 2, "pool": 3, "logits": 3, "logits_unbiased": 3}
DIMS = {"pool": 2048, "logits": 1008, "logits_unbiased": 1008, "pool_64": 64, "pool_192": 192, "pool_768": 768}

WHERE_FROM = (
    f"It is pytorch-fid's Inception file {PTH_NAME} ({FID_WEIGHTS_URL}); pytorch-fid puts it in "
    f"~/.cache/torch/hub/checkpoints/ the first time it runs. Point ${ENV_VAR} or `path=` at it, or convert it "
    f"once to a torch-free file: python -m ddss.metrics.inception convert {PTH_NAME} ~/.cache/ddss/{CONVERTED_NAME}"
)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
    """Conv (no bias) + inference BatchNorm (folded into the conv) + ReLU: torchvision's BasicConv2d."""
    features: int
    kernel_size: Any
    strides: Any = 1
    padding: Any = 0

    @nn.compact
    def __call__(self, x):
        kh, kw = _pair(self.kernel_size)
        kernel = self.param("kernel", nn.initializers.he_normal(), (kh, kw, x.shape[-1], self.features))
        scale = self.param("bn_scale", nn.initializers.ones, (self.features,))
        bias = self.param("bn_bias", nn.initializers.zeros, (self.features,))
        mean = self.param("bn_mean", nn.initializers.zeros, (self.features,))
        var = self.param("bn_var", nn.initializers.ones, (self.features,))
        mult = scale * jax.lax.rsqrt(var + BN_EPS)
        ph, pw = _pair(self.padding)
        y = jax.lax.conv_general_dilated(x, kernel * mult, _pair(self.strides), ((ph, ph), (pw, pw)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return nn.relu(y + (bias - mean * mult))


def max_pool(x, size: int = 3, stride: int = 2, pad: int = 0):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, size, size, 1), (1, stride, stride, 1),
                                 ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def avg_pool_exclude_pad(x):
    """3×3, stride 1, padding 1, averaging over the in-image pixels only (TF / count_include_pad=False)."""
    window, strides, pads = (1, 3, 3, 1), (1, 1, 1, 1), ((0, 0), (1, 1), (1, 1), (0, 0))
    total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
    ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
    count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pads)
    return total / count


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, 1, name="branch1x1")(x)
        b5 = BasicConv2d(48, 1, name="branch5x5_1")(x)
        b5 = BasicConv2d(64, 5, padding=2, name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, 1, name="branch_pool")(avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, 3, strides=2, name="branch3x3")(x)
        bd = BasicConv2d(64, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, 3, strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, max_pool(x)], axis=-1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv2d(192, 1, name="branch1x1")(x)
        b7 = BasicConv2d(c7, 1, name="branch7x7_1")(x)
        b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c7, 1, name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, 1, name="branch_pool")(avg_pool_exclude_pad(x))
        return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, 1, name="branch3x3_1")(x)
        b3 = BasicConv2d(320, 3, strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, 1, name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, 3, strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, max_pool(x)], axis=-1)


class InceptionE(nn.Module):
    """E_1 (average pool without padding) or E_2 (`max_pool_branch`: the FID graph's max pool)."""
    max_pool_branch: bool = False

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(320, 1, name="branch1x1")(x)
        b3 = BasicConv2d(384, 1, name="branch3x3_1")(x)
        b3 = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                              BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
        bd = BasicConv2d(448, 1, name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, 3, padding=1, name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                              BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
        pooled = max_pool(x, 3, 1, 1) if self.max_pool_branch else avg_pool_exclude_pad(x)
        bp = BasicConv2d(192, 1, name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], axis=-1)


@functools.lru_cache(maxsize=32)
def _resize_matrix(in_size: int, out_size: int, dtype=np.float32) -> np.ndarray:
    """[out, in] weights of torch's bilinear interpolate (align_corners=False, antialias=False) on one axis."""
    # torch computes the source coordinate and weight in the input's opmath type (float32 for float32
    # and lower, float64 for float64); doing the same keeps the resize equal to its output to
    # round-off at every size and precision.
    t = np.dtype(dtype).type
    scale = t(in_size) / t(out_size)
    src = np.maximum(scale * (np.arange(out_size, dtype=dtype) + t(0.5)) - t(0.5), t(0.0))
    i0 = np.minimum(src.astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = np.clip(src - i0.astype(dtype), 0.0, 1.0).astype(dtype)
    m = np.zeros((out_size, in_size), dtype)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), t(1.0) - lam)
    np.add.at(m, (rows, i1), lam)
    return m


def resize_bilinear(images, size: int = INPUT_SIZE):
    """NHWC bilinear resize to size×size, matching torch's `interpolate(bilinear, align_corners=False)`."""
    n, h, w, c = images.shape
    if (h, w) == (size, size):
        return images
    dtype = np.float64 if images.dtype == jnp.float64 else np.float32
    x = jnp.einsum("yh,nhwc->nywc", _resize_matrix(h, size, dtype), images)
    return jnp.einsum("xw,nywc->nyxc", _resize_matrix(w, size, dtype), x)


class InceptionV3(nn.Module):
    """The FID Inception-v3. Returns a dict with the requested `outputs` (see the module docstring)."""
    outputs: Sequence[str] = ("pool",)

    @nn.compact
    def __call__(self, images):
        unknown = set(self.outputs) - set(OUTPUTS)
        if unknown:
            raise ValueError(f"Unknown Inception outputs {sorted(unknown)}; choose from {OUTPUTS}.")
        depth = max(_DEPTH[name] for name in self.outputs)  # the network stops after the deepest output asked for
        out = {}
        x = resize_bilinear(images.astype(jnp.promote_types(images.dtype, jnp.float32)))
        x = BasicConv2d(32, 3, strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, 3, name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, 3, padding=1, name="Conv2d_2b_3x3")(x)
        x = max_pool(x)
        out["pool_64"] = x.mean(axis=(1, 2))
        if depth > 0:
            x = BasicConv2d(80, 1, name="Conv2d_3b_1x1")(x)
            x = BasicConv2d(192, 3, name="Conv2d_4a_3x3")(x)
            x = max_pool(x)
            out["pool_192"] = x.mean(axis=(1, 2))
        if depth > 1:
            x = InceptionA(32, name="Mixed_5b")(x)
            x = InceptionA(64, name="Mixed_5c")(x)
            x = InceptionA(64, name="Mixed_5d")(x)
            x = InceptionB(name="Mixed_6a")(x)
            for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
                x = InceptionC(c7, name=name)(x)
            out["pool_768"] = x.mean(axis=(1, 2))
        if depth > 2:
            x = InceptionD(name="Mixed_7a")(x)
            x = InceptionE(name="Mixed_7b")(x)
            x = InceptionE(max_pool_branch=True, name="Mixed_7c")(x)
            out["pool"] = x.mean(axis=(1, 2))
            kernel = self.param("fc_kernel", nn.initializers.lecun_normal(), (2048, 1008))
            bias = self.param("fc_bias", nn.initializers.zeros, (1008,))
            out["logits_unbiased"] = out["pool"] @ kernel
            out["logits"] = out["logits_unbiased"] + bias
        return {k: out[k] for k in self.outputs}


@parallel.precise_fn
def apply(params, images, outputs: Sequence[str] = ("pool",)) -> dict:
    """Pure function of (params, NHWC images in [-1, 1]) -> {output name: [N, dim] float32}."""
    return InceptionV3(tuple(outputs)).apply({"params": params}, images)


def init_params(key, image_size: int = 32) -> dict:
    """Random parameters of the exact architecture (tests; never for reported numbers)."""
    dummy = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    return jax.jit(InceptionV3(("pool", "logits")).init)(key, dummy)["params"]


@functools.lru_cache(maxsize=1)
def param_shapes() -> dict:
    return jax.eval_shape(lambda: init_params(jax.random.key(0)))


# ---------------------------------------------------------------------------------------------
# Images: the one place inputs are checked
# ---------------------------------------------------------------------------------------------

def check_images(images, *, channels: int = 3, what: str = "Inception") -> None:
    """One clear error for inputs the network would silently mis-score. No-op on tracers (under jit)."""
    if isinstance(images, jax.core.Tracer):
        return
    shape, dtype = np.shape(images), getattr(images, "dtype", np.asarray(images).dtype)
    if len(shape) != 4:
        raise ValueError(f"{what} expects NHWC images [N, H, W, {channels}], got shape {shape}.")
    if shape[-1] != channels:
        hint = " Grayscale images: repeat the channel, images.repeat(3, axis=-1)." if channels == 3 else ""
        raise ValueError(f"{what} expects {channels} channels (NHWC, channels last), got shape {shape}.{hint}")
    if not np.issubdtype(dtype, np.floating) and dtype != jnp.bfloat16:
        raise ValueError(f"{what} expects float images in [-1, 1], got dtype {dtype}. "
                         "From uint8 use images.astype(np.float32) / 127.5 - 1.")
    arr = np.asarray(images, np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: the images contain NaN or inf; the sampler that produced them diverged.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
        hint = " They look like [0, 255]: use images / 127.5 - 1." if hi > 2 else " Clip or rescale them."
        raise ValueError(f"{what} expects images in [-1, 1], got values in [{lo:.4g}, {hi:.4g}].{hint}")


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------

_BLOCK = re.compile(r"^(?P<module>.+)\.(?P<kind>conv|bn)\.(?P<leaf>weight|bias|running_mean|running_var)$")
_BN_LEAF = {"weight": "bn_scale", "bias": "bn_bias", "running_mean": "bn_mean", "running_var": "bn_var"}


def params_from_torch(state_dict: dict) -> dict:
    """pytorch-fid's state dict (torch tensors or numpy arrays) -> our params, checked against the architecture."""
    flat = {}
    for name, value in state_dict.items():
        arr = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        if name.endswith("num_batches_tracked") or name.startswith("AuxLogits."):
            continue
        if name == "fc.weight":
            flat["fc_kernel"] = arr.T
            continue
        if name == "fc.bias":
            flat["fc_bias"] = arr
            continue
        m = _BLOCK.match(name)
        if m is None:
            flat[name] = arr  # reported as unexpected by the check below
            continue
        prefix = m["module"].replace(".", "/")
        if m["kind"] == "conv":
            flat[f"{prefix}/kernel"] = arr.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        else:
            flat[f"{prefix}/{_BN_LEAF[m['leaf']]}"] = arr
    params = params_io.unflatten({k: np.ascontiguousarray(v, np.float32) for k, v in flat.items()})
    params_io.check_against(params, param_shapes(), source="Inception state dict")
    return params


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_pth(path: str, *, check_hash: bool = True) -> dict:
    """pytorch-fid's .pth -> params, via `torch.load(weights_only=True)`; checks the sha256 prefix."""
    if not os.path.isfile(path):
        raise params_io.WeightFileError(f"Inception weights not found: {path}. {WHERE_FROM}")
    if check_hash:
        digest = sha256_of(path)
        if not digest.startswith(SHA256_PREFIX):
            raise params_io.WeightFileError(
                f"{path} has sha256 {digest[:16]}…, not pytorch-fid's {SHA256_PREFIX}…: the file is truncated, "
                f"corrupt or a different network. Download it again ({FID_WEIGHTS_URL}). To use other Inception "
                f"weights of this architecture on purpose, pass features.get('inception', weights={path!r}, "
                "check_hash=False) or set --config.features.check_hash=False (eval_features likewise).")
    try:
        import torch
    except ImportError as e:
        raise params_io.WeightFileError(
            f"Reading {path} needs PyTorch (pip install torch). Or convert it once where torch is installed: "
            f"python -m ddss.metrics.inception convert {path} OUT.safetensors, then load OUT.safetensors.") from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged zips / pickles it refuses
        raise params_io.WeightFileError(f"{path} could not be read as a PyTorch state dict ({e}). {WHERE_FROM}") from e
    if not isinstance(state, dict):
        raise params_io.WeightFileError(f"{path} holds a {type(state).__name__}, not a state dict. {WHERE_FROM}")
    return params_from_torch(state)


def save(path: str, params, *, source_sha256: str = "") -> None:
    params_io.save(path, params, {"format": FORMAT, "source_sha256": source_sha256})


def _checked(params, path: str) -> dict:
    params_io.check_against(params, param_shapes(), source=path)
    params_io.check_finite(params, source=path)
    return params


def read_converted(path: str) -> dict:
    """A file written by `save` / `convert` (.safetensors)."""
    params, meta = params_io.load(path, what="Inception weights", hint=WHERE_FROM)
    if meta.get("format") != FORMAT:
        raise params_io.WeightFileError(f"{path} is not a converted Inception file (format {meta.get('format')!r}). "
                                        f"{WHERE_FROM}")
    return _checked(params, path)


def read_npz(path: str) -> dict:
    """A `.npz` written by `convert` (one array per parameter path)."""
    if not os.path.isfile(path):
        raise params_io.WeightFileError(f"Inception weights not found: {path}. {WHERE_FROM}")
    try:
        with np.load(path, allow_pickle=False) as f:
            flat = {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise params_io.WeightFileError(f"Inception weights {path} are corrupt or not an .npz ({e}). {WHERE_FROM}") from e
    return _checked(params_io.unflatten(flat), path)


def default_paths() -> list[str]:
    """Where `load_params()` looks, in order: $DDSS_INCEPTION_WEIGHTS, our converted copy, torch hub's cache."""
    torch_home = os.environ.get("TORCH_HOME", os.path.join(os.path.expanduser("~"), ".cache", "torch"))
    paths = [os.environ[ENV_VAR]] if os.environ.get(ENV_VAR) else []
    return paths + [os.path.join(os.path.expanduser("~"), ".cache", "ddss", CONVERTED_NAME),
                    os.path.join(torch_home, "hub", "checkpoints", PTH_NAME)]


def load_params(path: str | None = None, *, check_hash: bool = True) -> dict:
    """FID Inception params from `path` (.pth or converted .safetensors/.npz) or the first default path found."""
    if path is None:
        found = [p for p in default_paths() if os.path.isfile(p)]
        if not found:
            raise params_io.WeightFileError(f"No Inception weights found (looked in {default_paths()}). {WHERE_FROM}")
        path = found[0]
    path = os.path.expanduser(path)
    if path.endswith(".pth") or path.endswith(".pt"):
        return read_pth(path, check_hash=check_hash)
    if path.endswith(".npz"):
        return read_npz(path)
    return read_converted(path)


def convert(pth: str, out: str, *, check_hash: bool = True) -> None:
    """pytorch-fid .pth -> torch-free file (.safetensors, or .npz by extension)."""
    params = read_pth(pth, check_hash=check_hash)
    if out.endswith(".npz"):
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        np.savez(out, **params_io.flatten(params))
    else:
        save(out, params, source_sha256=sha256_of(pth))


def _main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ddss.metrics.inception",
                                     description="Convert pytorch-fid's Inception weights to a torch-free file.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("convert", help="PTH -> OUT (.safetensors or .npz)")
    c.add_argument("pth")
    c.add_argument("out")
    c.add_argument("--no-check-hash", action="store_true", help="accept weights other than pytorch-fid's file")
    args = parser.parse_args(argv)
    convert(args.pth, args.out, check_hash=not args.no_check_hash)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    _main()
