"""Learned samplers as self-describing files: `save_sampler` and `ddss.load_sampler` (DESIGN.md §8).

  sampler = ddss.load_sampler("DIR/K5/ggdm+pred+time.safetensors")
  x0 = jax.jit(lambda x, key: sampler.sample(model_eps_fn, x, key))(x_K, key)

The file is safetensors: the learned arrays (`learned/<name>`), the base times and the schedule's
log ᾱ table as tensors, and in the header the family, base solver, η, K, whether x̂_0 is clipped,
and how the sampler was trained. Nothing is unpickled. Inside your own jit, pass
`sampler.params` as an argument (`ggdm.sample(params, eps_fn, x_K, key)`) to keep the arrays out
of the compiled program; changing their values then never recompiles.
"""
from __future__ import annotations

import dataclasses
import numpy as np

from ddss import schedules
from ddss.models import params_io
from ddss.samplers import ggdm

KIND = "ddss_sampler"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class LoadedSampler:
    params: ggdm.GGDMParams
    clip_denoised: bool
    metadata: dict

    @property
    def family(self) -> str:
        return self.params.family

    @property
    def num_steps(self) -> int:
        return self.params.num_steps

    def sample(self, eps_fn, x_K, key, **kwargs):
        """x_0 from x_K with the learned sampler (jittable; `kwargs` go to `ggdm.sample`)."""
        kwargs.setdefault("clip_denoised", self.clip_denoised)
        return ggdm.sample(self.params, eps_fn, x_K, key, **kwargs)


def save_sampler(path: str, params: ggdm.GGDMParams, *, clip_denoised: bool, info: dict | None = None) -> None:
    """Writes a learned GGDM-family sampler; `info` (JSON-able) records how it was made."""
    ggdm.check_params(params)
    tensors = {"learned": {k: np.asarray(v, np.float32) for k, v in params.learned.items()},
               "base_times": np.asarray(params.base_times, np.float64),
               "schedule": {"log_alpha_bar_table": np.asarray(params.schedule.log_alpha_bar_table, np.float64)}}
    meta = {"kind": KIND, "format_version": FORMAT_VERSION, "family": params.family, "base": params.base,
            "eta": params.eta, "num_steps": params.num_steps, "clip_denoised": bool(clip_denoised),
            "info": info or {}}
    params_io.save(path, tensors, meta)


def load_sampler(path: str, *, family: str | None = None, num_steps: int | None = None) -> LoadedSampler:
    """Reads a file written by `save_sampler`. `family` / `num_steps`, when given, must match the file."""
    tensors, meta = params_io.load(path, what="sampler file",
                                   hint="Export one with `python -m ddss.main --config=configs/digits_ddss.py`.")
    if meta.get("kind") != KIND:
        raise params_io.WeightFileError(f"{path} is not a ddss sampler file (kind {meta.get('kind')!r}).")
    if family is not None and meta["family"] != family:
        raise ValueError(f"{path} holds a {meta['family']} sampler, not {family}: export the {family} sampler, or "
                         f"load this one with family={meta['family']!r}.")
    if num_steps is not None and meta["num_steps"] != num_steps:
        raise ValueError(f"{path} holds a K = {meta['num_steps']} sampler, not K = {num_steps}; its steps and "
                         "coefficients only work together. Train or export one for K = "
                         f"{num_steps}.")
    schedule = schedules.Schedule(log_alpha_bar_table=tensors["schedule"]["log_alpha_bar_table"])
    params = ggdm.GGDMParams(schedule=schedule, base_times=tensors["base_times"], learned=tensors["learned"],
                             family=meta["family"], base=meta["base"], eta=float(meta["eta"]))
    if params.num_steps != meta["num_steps"]:
        raise params_io.WeightFileError(f"{path} is corrupt: its header says K = {meta['num_steps']}, its arrays "
                                        f"K = {params.num_steps}.")
    try:
        ggdm.check_params(params)
    except FloatingPointError as e:
        raise FloatingPointError(f"{path}: {e}") from None
    except ValueError as e:
        raise params_io.WeightFileError(f"{path} does not hold a valid {meta['family']} sampler: {e}") from None
    return LoadedSampler(params=params, clip_denoised=bool(meta["clip_denoised"]), metadata=meta)

