"""A pretrained diffusion model as the samplers and searches see it: network, parameters, schedule.

`DiffusionModel.eps_fn(x, t, skip_mask=None, skip=())` is always the ε-prediction, whatever the
network was trained to predict: `prediction` names its output ("eps", "x0" for diffusers'
"sample", "v" for "v_prediction"), and the adapters of `ddss.models.adapters` turn x₀ and v into ε
with the model's schedule. A network with twice as many output as input channels
(`learned_variance`, diffusers' `variance_type` "learned" or "learned_range") predicts ε in its
first C channels and a variance in the last C: `eps_fn` returns the first, `variance_fn` the
second, and `model_output` the network's raw output with all its channels. `schedule` is the noise
schedule and `blocks` the skippable blocks with their cost.

Inside your own `jit`, prefer `pretrained.eps_fn(model, params)` with `params` passed as an
argument, so large parameter trees are inputs rather than constants baked into the compiled
program (`unet.eps_fn(model.config, params)` is the raw network, correct only for an
ε-prediction model without learned variance).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Sequence

from ddss import schedules
from ddss.models import adapters, params_io, unet

SCHEDULES = {"linear_beta": schedules.linear_beta, "cosine": schedules.cosine}


def schedule_from_spec(spec: dict[str, Any]) -> schedules.Schedule:
    """{'kind': 'linear_beta', 'num_timesteps': 1000, ...} -> Schedule."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in SCHEDULES:
        raise ValueError(f"Unknown schedule kind {kind!r}; choose one of {sorted(SCHEDULES)}.")
    return SCHEDULES[kind](**spec)


def check_output_channels(config: unet.UNetConfig, *, source: str = "") -> None:
    """out_channels must be in_channels (ε) or twice that (ε and a learned variance)."""
    c, out = config.in_channels, config.out_channels
    if out not in (c, 2 * c):
        where = f"{source}: " if source else ""
        raise ValueError(f"{where}out_channels={out} with in_channels={c}: a diffusion UNet here must output "
                         f"{c} channels (ε, x₀ or v) or {2 * c} (those and a learned variance).")


@dataclasses.dataclass(frozen=True)
class DiffusionModel:
    config: unet.UNetConfig
    params: Any
    schedule: schedules.Schedule
    schedule_spec: dict
    metadata: dict = dataclasses.field(default_factory=dict)
    prediction: str = "eps"  # what the network predicts: "eps", "x0" or "v" (eps_fn always returns ε)

    def __post_init__(self):
        if self.prediction not in adapters.PREDICTIONS:
            raise ValueError(f"Unknown prediction {self.prediction!r}; choose one of {adapters.PREDICTIONS}.")
        check_output_channels(self.config, source=self.metadata.get("source", ""))

    @property
    def learned_variance(self) -> bool:
        """True when the network outputs 2C channels: ε (or x₀ / v) first, then a variance."""
        return learned_variance(self.config)

    @property
    def blocks(self) -> tuple[unet.Block, ...]:
        return unet.blocks(self.config)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def block_macs(self) -> tuple[int, ...]:
        return tuple(b.macs for b in self.blocks)

    @property
    def network_macs(self) -> int:
        return unet.network_macs(self.config)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        s = self.config.sample_size
        return (s, s, self.config.in_channels)

    def eps_fn(self, x, t, skip_mask=None, skip: Sequence[int] = ()):
        """ε̂(x, t) with `skip_mask` (traced [L] bools) and/or `skip` (static block indices) removed."""
        return eps_fn(self, skip_mask=skip_mask, skip=skip)(x, t)

    def variance_fn(self, x, t, skip_mask=None, skip: Sequence[int] = ()):
        """The learned-variance channels (the last C of the output), as the network gives them."""
        return variance_fn(self, skip_mask=skip_mask, skip=skip)(x, t)

    def model_output(self, x, t, skip_mask=None, skip: Sequence[int] = ()):
        """The network's raw output, all `out_channels` of it, before any conversion to ε."""
        return _raw(self, None, skip_mask, skip)(x, t)


def learned_variance(config: unet.UNetConfig) -> bool:
    return config.out_channels == 2 * config.in_channels


def _raw(model: DiffusionModel, params, skip_mask, skip):
    return unet.eps_fn(model.config, model.params if params is None else params, skip_mask=skip_mask, skip=skip)


def eps_fn(model: DiffusionModel, params=None, *, skip_mask=None, skip: Sequence[int] = ()):
    """`eps_fn(x, t)` -> ε̂ of `model` with `params` (default: its own), skip mask and/or static skip list.

    The first C output channels of a learned-variance network, converted to ε from the model's
    `prediction` with its schedule."""
    raw, c = _raw(model, params, skip_mask, skip), model.config.in_channels
    first = (lambda x, t: raw(x, t)[..., :c]) if model.learned_variance else raw
    return adapters.as_eps_fn(first, model.schedule, model.prediction)


def variance_fn(model: DiffusionModel, params=None, *, skip_mask=None, skip: Sequence[int] = ()):
    """`variance_fn(x, t)` -> the last C output channels of a learned-variance network (raw; read them as
    the checkpoint's `variance_type` says, e.g. diffusers' "learned_range" interpolation of log β)."""
    if not model.learned_variance:
        raise ValueError(f"This model has out_channels={model.config.out_channels} = in_channels: it learned no "
                         "variance. Only a network with 2×in_channels outputs has variance channels.")
    raw, c = _raw(model, params, skip_mask, skip), model.config.in_channels
    return lambda x, t: raw(x, t)[..., c:]


def warn_learned_variance(config: unet.UNetConfig, source: str) -> None:
    """One warning when a network's output carries a learned variance next to its prediction."""
    if learned_variance(config):
        c = config.in_channels
        warnings.warn(f"{source} has out_channels={config.out_channels} = 2×in_channels (learned variance): the "
                      f"samplers use the first {c} channels as the prediction; the last {c} are ignored "
                      "(model.variance_fn returns them).", stacklevel=3)


def save(path: str, config: unet.UNetConfig, params, schedule_spec: dict, *, prediction: str = "eps",
         **extra) -> None:
    """Writes a self-describing UNet weight file (config, schedule, prediction and `extra` in the metadata)."""
    if prediction not in adapters.PREDICTIONS:
        raise ValueError(f"Unknown prediction {prediction!r}; choose one of {adapters.PREDICTIONS}.")
    params_io.save(path, params, {"kind": "unet", "config": config.to_dict(), "schedule": schedule_spec,
                                  **extra, "prediction": prediction})


def load(path: str, *, hint: str = "") -> DiffusionModel:
    """Reads a file written by `save`, checking every parameter's name and shape against its config."""
    params, meta = params_io.load(path, what="UNet weight file", hint=hint)
    if meta.get("kind") != "unet" or "config" not in meta or "schedule" not in meta:
        raise params_io.WeightFileError(
            f"{path} is not a ddss UNet weight file (its metadata has no UNet config and schedule). {hint}".strip())
    config = unet.UNetConfig.from_dict(meta["config"])
    params_io.check_against(params, unet.param_shapes(config), source=path)
    params_io.check_finite(params, source=path)
    prediction = meta.get("prediction", "eps")
    if prediction not in adapters.PREDICTIONS:
        raise params_io.WeightFileError(f"{path} says its network predicts {prediction!r}; ddss reads "
                                        f"{adapters.PREDICTIONS}. {hint}".strip())
    model = DiffusionModel(config, params, schedule_from_spec(meta["schedule"]), meta["schedule"], meta, prediction)
    warn_learned_variance(config, path)
    return model
