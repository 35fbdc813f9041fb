"""A pretrained diffusion model as the samplers and searches see it: network, parameters, schedule.

`DiffusionModel.eps_fn(x, t, skip_mask=None, skip=())` is the ε-prediction of the UNet (other
parameterisations go through `ddss.models.adapters`), `schedule` its noise schedule, and `blocks`
the skippable blocks with their cost. Inside your own `jit`, prefer
`unet.eps_fn(model.config, params)` with `params` passed as an argument, so large parameter
trees are inputs rather than constants baked into the compiled program.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from ddss import schedules
from ddss.models import params_io, unet

SCHEDULES = {"linear_beta": schedules.linear_beta, "cosine": schedules.cosine}


def schedule_from_spec(spec: dict[str, Any]) -> schedules.Schedule:
    """{'kind': 'linear_beta', 'num_timesteps': 1000, ...} -> Schedule."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind not in SCHEDULES:
        raise ValueError(f"Unknown schedule kind {kind!r}; choose one of {sorted(SCHEDULES)}.")
    return SCHEDULES[kind](**spec)


@dataclasses.dataclass(frozen=True)
class DiffusionModel:
    config: unet.UNetConfig
    params: Any
    schedule: schedules.Schedule
    schedule_spec: dict
    metadata: dict = dataclasses.field(default_factory=dict)

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
        return unet.UNet(self.config).apply({"params": self.params}, x, t, skip_mask, tuple(skip))


def save(path: str, config: unet.UNetConfig, params, schedule_spec: dict, **extra) -> None:
    """Writes a self-describing UNet weight file (config, schedule and `extra` in the metadata)."""
    params_io.save(path, params, {"kind": "unet", "config": config.to_dict(), "schedule": schedule_spec,
                                  "prediction": "eps", **extra})


def load(path: str, *, hint: str = "") -> DiffusionModel:
    """Reads a file written by `save`, checking every parameter's name and shape against its config."""
    params, meta = params_io.load(path, what="UNet weight file", hint=hint)
    if meta.get("kind") != "unet" or "config" not in meta or "schedule" not in meta:
        raise params_io.WeightFileError(
            f"{path} is not a ddss UNet weight file (its metadata has no UNet config and schedule). {hint}".strip())
    config = unet.UNetConfig.from_dict(meta["config"])
    params_io.check_against(params, unet.param_shapes(config), source=path)
    params_io.check_finite(params, source=path)
    return DiffusionModel(config, params, schedule_from_spec(meta["schedule"]), meta["schedule"], meta)
