"""Import diffusers `UNet2DModel` checkpoints (e.g. google/ddpm-cifar10-32) into the Flax UNet.

  model = ddss.models.convert.load_diffusers("/path/to/ddpm-cifar10-32")   # DiffusionModel
  python -m ddss.models.convert /path/to/ddpm-cifar10-32 cifar10_unet.safetensors [PREDICTION_TYPE]

The directory is what `huggingface-cli download google/ddpm-cifar10-32 --local-dir DIR` gives (or a
pipeline directory with a `unet/` folder): `config.json`, `diffusion_pytorch_model.safetensors`
and, optionally, the scheduler's `scheduler_config.json` (beside `config.json`, or in the pipeline's
`scheduler/` folder) for the noise schedule and what the network predicts. Weights are read with numpy from
the safetensors file; no torch at run time. A directory that only has the pickled
`diffusion_pytorch_model.bin` is read with `torch.load(weights_only=True)` when torch is
installed, and otherwise rejected with the command that converts it.

Parameter names map one to one (`down_blocks.0.resnets.1.conv1.weight` ->
`down_blocks_0/resnets_1/conv1/kernel`); convolution kernels go from OIHW to HWIO and dense
kernels are transposed. The attention names of old checkpoints (`query`, `key`, `value`,
`proj_attn`) are accepted too.

What the network predicts is the scheduler's `prediction_type`: "epsilon" (the default, as DDPM),
"v_prediction" or "sample" (x₀). `load_diffusers(DIR, prediction_type=...)` gives it where the
directory has no scheduler config, or overrides it. The returned model records it
(`model.prediction`: "eps", "v" or "x0"; `model.metadata["prediction_type"]`: diffusers' name) and
its `eps_fn` returns ε whatever it is. A network with `out_channels` = 2 × `in_channels` (diffusers'
`variance_type` "learned" or "learned_range") loads with a warning: `model.learned_variance` is
True, `eps_fn` uses the first C channels and `model.variance_fn` returns the last C.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys

import numpy as np

from ddss.models import params_io, pretrained, unet


class MissingWeightsError(params_io.WeightFileError, FileNotFoundError):
    """The checkpoint directory has no weights file (a WeightFileError and a FileNotFoundError)."""

WEIGHTS = "diffusion_pytorch_model.safetensors"
PICKLED_WEIGHTS = "diffusion_pytorch_model.bin"
_WHERE = ("Download it with `huggingface-cli download google/ddpm-cifar10-32 --local-dir DIR` "
          "(or any diffusers UNet2DModel repository) and pass DIR.")
_AGAIN = ("Download the checkpoint again (`huggingface-cli download REPO --local-dir DIR`; an interrupted download "
          "leaves files cut short)")
_DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out_0"}
_UNSUPPORTED = {  # config field -> the only value this UNet implements
    "time_embedding_type": "positional",
    "act_fn": "silu",
    "class_embed_type": None,
    "num_class_embeds": None,
    "downsample_type": "conv",
    "upsample_type": "conv",
    "mid_block_type": "UNetMidBlock2D",
}
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}  # diffusers' name -> ddss's


def unet_directory(path: str) -> str:
    """The folder holding the UNet's config.json: `path` itself or its `unet/` subfolder."""
    if os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint {path!r} is a file; pass the directory holding its config.json and "
                                f"{WEIGHTS}. {_WHERE}")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Checkpoint directory {path!r} does not exist. {_WHERE}")
    for candidate in (path, os.path.join(path, "unet")):
        if os.path.isfile(os.path.join(candidate, "config.json")):
            return candidate
    raise FileNotFoundError(f"No config.json in {path!r} or {os.path.join(path, 'unet')!r}: not a diffusers UNet "
                            f"checkpoint. {_WHERE}")


def read_json(path: str, what: str) -> dict:
    """A JSON object from `path`; one ValueError naming the path and the position of a syntax error."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno} (char {e.pos}). "
                         f"Fix that spot, or download the checkpoint's {what} again.") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not a UTF-8 JSON text file ({e.reason} at byte {e.start}): it is damaged. "
                         f"Download the checkpoint's {what} again.") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not an object of {what} fields: it is not a "
                         f"diffusers {what}.")
    return value


def config_from_diffusers(cfg: dict) -> unet.UNetConfig:
    """UNetConfig from a diffusers `UNet2DModel` config.json (diffusers' defaults for absent fields)."""
    if cfg.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise ValueError(f"The checkpoint is a {cfg['_class_name']}; only diffusers UNet2DModel checkpoints convert.")
    for field, supported in _UNSUPPORTED.items():
        if field in cfg and cfg[field] != supported:
            raise ValueError(f"UNet2DModel option {field}={cfg[field]!r} is not supported (only {supported!r}).")
    defaults = dict(sample_size=32, in_channels=3, out_channels=3, freq_shift=0, flip_sin_to_cos=True,
                    down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
                    up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
                    block_out_channels=(224, 448, 672, 896), layers_per_block=2, mid_block_scale_factor=1.0,
                    downsample_padding=1, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5,
                    resnet_time_scale_shift="default", add_attention=True, attn_norm_num_groups=None,
                    center_input_sample=False, time_embedding_dim=None, dropout=0.0)
    merged = {k: cfg.get(k, v) for k, v in defaults.items()}
    size = merged["sample_size"]
    if isinstance(size, (list, tuple)):
        if len(set(size)) != 1:
            raise ValueError(f"sample_size {size} is not square; this UNet takes square images.")
        merged["sample_size"] = size[0]
    merged["dropout"] = 0.0  # inference only
    return unet.UNetConfig.from_dict(merged)


def flax_name(torch_name: str) -> tuple[tuple[str, ...], str]:
    """'down_blocks.0.resnets.1.conv1.weight' -> (('down_blocks_0', 'resnets_1', 'conv1'), 'weight')."""
    path = re.sub(r"\.(\d+)(?=\.|$)", r"_\1", torch_name).split(".")
    modules, leaf = path[:-1], path[-1]
    if modules and modules[-1] in _DEPRECATED_ATTENTION:
        modules[-1] = _DEPRECATED_ATTENTION[modules[-1]]
    if modules and modules[-1] == "Conv2d_0":  # diffusers registers a down-sampling conv under two names
        modules[-1] = "conv"
    return tuple(modules), leaf


def params_from_diffusers(state: dict[str, np.ndarray], config: unet.UNetConfig, *, source: str) -> dict:
    """Flax parameters of `config` from a diffusers state dict; one clear error for any mismatch."""
    shapes = unet.param_shapes(config)
    expected = params_io.flatten_shapes(shapes)
    flat: dict[str, np.ndarray] = {}
    for name, value in state.items():
        modules, leaf = flax_name(name)
        value = np.asarray(value, np.float32)
        prefix = "/".join(modules)
        if leaf == "bias":
            key = f"{prefix}/bias"
        elif f"{prefix}/scale" in expected:
            key = f"{prefix}/scale"
        elif value.ndim == 4 and value.shape[2:] == (1, 1) and expected.get(f"{prefix}/kernel", value).ndim == 2:
            key, value = f"{prefix}/kernel", value[:, :, 0, 0].T  # old checkpoints store attention as 1×1 convs
        elif value.ndim == 4:
            key, value = f"{prefix}/kernel", value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        elif value.ndim == 2:
            key, value = f"{prefix}/kernel", value.T
        else:
            key = f"{prefix}/{leaf}"
        if key in flat and np.array_equal(flat[key], value):
            continue
        flat[key] = value
    params = params_io.unflatten(flat)
    params_io.check_against(params, shapes, source=source)
    return params


def read_state_dict(directory: str) -> tuple[dict[str, np.ndarray], str]:
    """The UNet's weights as numpy arrays, from safetensors (or a .bin through torch's safe loader)."""
    path = os.path.join(directory, WEIGHTS)
    if os.path.isfile(path):
        from safetensors.numpy import load_file

        from ddss.export import safetensors_problem

        problem = safetensors_problem(path)
        if problem:
            raise params_io.WeightFileError(f"{path} {problem}. {_AGAIN}.")
        try:
            return load_file(path), path
        except Exception as e:  # safetensors raises several types for damaged files
            raise params_io.WeightFileError(f"{path} is corrupt or not a safetensors file ({e}). {_AGAIN}.") from None
    pickled = os.path.join(directory, PICKLED_WEIGHTS)
    if os.path.isfile(pickled):
        convert = (f"python -c \"import torch, safetensors.torch as st; st.save_file(torch.load('{pickled}', "
                   f"weights_only=True), '{path}')\"")
        return read_torch_file(pickled, convert=convert, again=_AGAIN, expected="a UNet state dict of tensors",
                               where=f"Pass the directory diffusers' save_pretrained wrote. {_WHERE}",
                               trusted=f"save it as {WEIGHTS} where you trust it"), pickled
    raise MissingWeightsError(f"No {WEIGHTS} (or {PICKLED_WEIGHTS}) in {directory}: the weights are missing. "
                              f"{_WHERE}")


def read_torch_file(path: str, *, convert: str, again: str, expected: str, where: str, trusted: str) -> dict:
    """A PyTorch state dict (name -> tensor) as float32 numpy arrays, read with
    `torch.load(weights_only=True)`: never an arbitrary unpickle. Without torch, the error gives
    `convert`, the one-time command that writes a file ddss reads without it."""
    try:
        import torch
    except ImportError:
        raise params_io.WeightFileError(
            f"{path} is a pickled PyTorch file, which needs torch to read. Install torch, or convert it once "
            f"where torch is installed with `{convert}`.") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for damaged files
        text = str(e).strip()
        inner = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|Check the documentation|$)", text, re.S)
        first = inner.group(1) if inner else (text.split(". ")[0] if text else type(e).__name__)
        raise params_io.WeightFileError(
            f"{path} cannot be read with torch.load(weights_only=True) ({first}): it is damaged, or holds "
            f"objects other than tensors, which ddss never unpickles. {again}, or {trusted}.") from None
    others = sorted(k for k, v in state.items() if not isinstance(v, torch.Tensor)) if isinstance(state, dict) \
        else None
    if others is None or others:
        found = f"entries that are not tensors: {others[:5]}" if others else f"a {type(state).__name__}"
        raise params_io.WeightFileError(f"{path} is not {expected} (it holds {found}). {where}")
    return {k: v.float().numpy() for k, v in state.items()}


def scheduler_config(path: str) -> tuple[dict, str]:
    """The scheduler config next to the checkpoint and its path: DIR/scheduler_config.json (a UNet
    repository), DIR/scheduler/scheduler_config.json (a pipeline) or, for DIR = PIPELINE/unet,
    PIPELINE/scheduler/scheduler_config.json. ({}, "") when there is none."""
    for candidate in (os.path.join(path, "scheduler_config.json"), os.path.join(path, "scheduler", "scheduler_config.json"),
                      os.path.join(os.path.dirname(os.path.normpath(path)), "scheduler", "scheduler_config.json")):
        if os.path.isfile(candidate):
            return read_json(candidate, "scheduler config"), candidate
    return {}, ""


def schedule_spec_from_scheduler(sc: dict) -> dict:
    """The noise schedule of a diffusers scheduler config (DDPM's linear β, T=1000, for an empty one)."""
    if sc.get("trained_betas") is not None:
        raise ValueError("Schedules given as `trained_betas` are not supported; use a linear or cosine schedule.")
    kind = sc.get("beta_schedule", "linear")

    def number(field, default, cast):
        value = sc.get(field, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or cast(value) != value:
            raise ValueError(f"{field} is {value!r}; it must be {'an integer' if cast is int else 'a number'}.")
        return cast(value)

    steps = number("num_train_timesteps", 1000, int)
    if kind == "linear":
        return {"kind": "linear_beta", "num_timesteps": steps, "beta_start": number("beta_start", 1e-4, float),
                "beta_end": number("beta_end", 0.02, float)}
    if kind == "squaredcos_cap_v2":
        return {"kind": "cosine", "num_timesteps": steps}
    raise ValueError(f"beta_schedule {kind!r} is not supported; use 'linear' or 'squaredcos_cap_v2'.")


def prediction_from_diffusers(prediction_type: str, *, source: str) -> str:
    """diffusers' prediction_type -> ddss's prediction name ("eps", "v", "x0"); one error for anything else."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type {prediction_type!r} ({source}) is not supported; use one of "
                         f"{tuple(PREDICTION_TYPES)} (fix the scheduler config, or pass load_diffusers(DIR, "
                         f"prediction_type=...)).")
    return PREDICTION_TYPES[prediction_type]


def load_diffusers(path: str, *, prediction_type: str | None = None) -> pretrained.DiffusionModel:
    """A diffusers UNet2DModel checkpoint directory -> DiffusionModel whose `eps_fn` returns ε.

    `prediction_type` ("epsilon", "v_prediction" or "sample") overrides the scheduler config's; with
    neither, the network is taken to predict ε (as DDPM)."""
    path = os.path.expanduser(path)
    directory = unet_directory(path)
    config_path = os.path.join(directory, "config.json")
    try:
        config = config_from_diffusers(read_json(config_path, "config.json"))
    except (TypeError, ValueError) as e:
        if str(e).startswith(config_path):
            raise
        raise ValueError(f"{config_path} cannot be converted: {e}") from None
    pretrained.check_output_channels(config, source=config_path)
    sc, found = scheduler_config(path)
    try:
        spec = schedule_spec_from_scheduler(sc)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{found}: {e}" if found else str(e)) from None
    if prediction_type is not None:
        if sc.get("prediction_type") not in (None, prediction_type):
            logging.warning("prediction_type=%r overrides %r from %s.", prediction_type, sc["prediction_type"], found)
        kind, origin = prediction_type, "the prediction_type argument"
    else:
        kind, origin = sc.get("prediction_type") or "epsilon", f"from {found}" if found else "the default"
    prediction = prediction_from_diffusers(kind, source=origin)
    if not found:
        logging.warning("No scheduler_config.json next to %s; assuming DDPM's linear-β schedule with T=1000%s.", path,
                        "" if prediction_type else " and ε-prediction (pass prediction_type= to say otherwise)")
    state, source = read_state_dict(directory)
    params = params_from_diffusers(state, config, source=f"{source} (with {config_path})")
    params_io.check_finite(params, source=source)
    metadata = {"source": source, "prediction_type": kind}
    if sc.get("variance_type") is not None:
        metadata["variance_type"] = sc["variance_type"]
    pretrained.warn_learned_variance(config, directory)
    return pretrained.DiffusionModel(config, params, pretrained.schedule_from_spec(spec), spec, metadata, prediction)


def main(argv: list[str]) -> None:
    if len(argv) not in (3, 4):
        raise SystemExit("usage: python -m ddss.models.convert DIFFUSERS_DIR OUT.safetensors [PREDICTION_TYPE]")
    model = load_diffusers(argv[1], prediction_type=argv[3] if len(argv) == 4 else None)
    pretrained.save(argv[2], model.config, model.params, model.schedule_spec, prediction=model.prediction,
                    source=model.metadata["source"])
    print(f"wrote {argv[2]}: L={model.num_blocks} blocks, {unet.count_params(model.params):,} parameters")


if __name__ == "__main__":
    main(sys.argv)
