"""Learned and searched samplers as self-describing files: `save_sampler`, `save_evolved_sampler` and
`ddss.load_sampler`.

  sampler = ddss.load_sampler("DIR/K5/ggdm+pred+time.safetensors")
  x0 = jax.jit(lambda x, key: sampler.sample(model_eps_fn, x, key))(x_K, key)

The file is safetensors: the learned arrays (`learned/<name>`), the base times and the schedule's
log ᾱ table as tensors, and in the header the family, base solver, η, K, whether x̂_0 is clipped,
and how the sampler was trained. Nothing is unpickled. Inside your own jit, pass
`sampler.params` as an argument (`ggdm.sample(params, eps_fn, x_K, key)`) to keep the arrays out
of the compiled program; changing their values then never recompiles.

Every file written here gets a plain-JSON twin beside it, `<name>.timesteps.json`
(`save_timesteps_json`): the integer timesteps, noisiest first, for tools that take a timestep list,
such as a diffusers scheduler's `set_timesteps(timesteps=...)`. Only the times carry over; the
learned coefficients and the skipped blocks need `ddss.load_sampler`.

A searched (AutoDiffusion) sampler holds integer timesteps, the skipped blocks of each step and the
sampler kind (plus GGDM coefficients when it searched a GGDM's times). Loaded, it compiles the skip
lists *statically*: skipped blocks are not computed. Its model function takes the skip list:

  sampler = ddss.load_sampler("DIR/runs/evolution-joint_B4/sampler.safetensors", num_blocks=model.num_blocks)
  x0 = jax.jit(lambda x, key: sampler.sample(lambda x_, t_, skip: model.eps_fn(x_, t_, skip=skip), x, key))(x_K, key)
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from ddss import schedules
from ddss.models import params_io
from ddss.samplers import ggdm, skipping

TIMESTEPS_KIND = "ddss_timesteps"
KIND = "ddss_sampler"
EVOLVED_KIND = "ddss_evolved_sampler"
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
    save_timesteps_json(timesteps_json_path(path), LoadedSampler(params=params, clip_denoised=clip_denoised,
                                                                 metadata=meta))


@dataclasses.dataclass(frozen=True)
class EvolvedSampler:
    """A searched sampler: `kind` (ddim | dpm_solver++ | ggdm) at integer `timesteps` (τ_K > ... > τ_1),
    skipping the blocks `skip[k]` at step k, for a network with `num_blocks` skippable blocks."""

    kind: str
    timesteps: np.ndarray
    skip: tuple[tuple[int, ...], ...]
    num_blocks: int
    schedule: schedules.Schedule
    clip_denoised: bool
    ggdm_params: ggdm.GGDMParams | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    @property
    def block_executions(self) -> int:
        return self.num_steps * self.num_blocks - sum(len(s) for s in self.skip)

    def sample(self, eps_fn, x_K, key, **kwargs):
        """x_0 from x_K (jittable). `eps_fn(x, t, skip)` must honour the static tuple `skip`, e.g.
        `lambda x, t, skip: model.eps_fn(x, t, skip=skip)` for a `ddss.models` network."""
        kwargs.setdefault("clip_denoised", self.clip_denoised)
        eps = skipping.static_eps(eps_fn, self.timesteps, self.skip)
        return skipping.sample_at(self.kind, self.schedule, self.timesteps, eps, x_K, key,
                                  template=self.ggdm_params, **kwargs)


def save_evolved_sampler(path: str, timesteps, skip_mask, *, kind: str, schedule: schedules.Schedule,
                         clip_denoised: bool, ggdm_params: ggdm.GGDMParams | None = None,
                         info: dict | None = None) -> None:
    """Writes a searched sampler: timesteps [K] (integers; stored noisiest first, each skip row kept with
    its timestep), skip mask [K, L] (True = skip), the sampler kind."""
    t, mask = np.asarray(timesteps), np.asarray(skip_mask, bool)
    if t.ndim != 1 or mask.ndim != 2 or mask.shape[0] != len(t):
        raise ValueError(f"Need timesteps [K] and a skip mask [K, L]; got shapes {t.shape} and {mask.shape}.")
    order = np.argsort(-t, kind="stable")  # noisiest first, each skip row kept with its timestep
    t, mask = t[order], mask[order]
    skipping.check_timesteps(t, mask, schedule.num_timesteps)
    tensors = {"timesteps": t.astype(np.int64), "skip_mask": mask.astype(np.uint8),
               "schedule": {"log_alpha_bar_table": np.asarray(schedule.log_alpha_bar_table, np.float64)}}
    meta = {"kind": EVOLVED_KIND, "format_version": FORMAT_VERSION, "sampler": kind, "num_steps": len(t),
            "num_blocks": int(mask.shape[1]), "clip_denoised": bool(clip_denoised), "info": info or {}}
    if ggdm_params is not None:
        tensors["ggdm"] = {k: np.asarray(v, np.float32) for k, v in ggdm_params.learned.items()}
        meta.update(family=ggdm_params.family, base=ggdm_params.base, eta=ggdm_params.eta)
    params_io.save(path, tensors, meta)
    save_timesteps_json(timesteps_json_path(path), EvolvedSampler(
        kind=kind, timesteps=t, skip=skipping.skip_lists(mask), num_blocks=int(mask.shape[1]), schedule=schedule,
        clip_denoised=clip_denoised, ggdm_params=ggdm_params, metadata=meta))


def timesteps_json_path(path: str) -> str:
    """`DIR/sampler.safetensors` -> `DIR/sampler.timesteps.json`."""
    stem = path[:-len(".safetensors")] if path.endswith(".safetensors") else path
    return stem + ".timesteps.json"


def timesteps_record(sampler: LoadedSampler | EvolvedSampler) -> dict:
    """A sampler's timesteps as plain JSON-able data (see `save_timesteps_json`)."""
    if isinstance(sampler, LoadedSampler):
        exact = [float(v) for v in np.asarray(ggdm.times(sampler.params), np.float64)]
        T, method = sampler.params.schedule.num_timesteps, f"{sampler.family} over {sampler.params.base}"
        dropped = "the learned GGDM coefficients"
        skip = None
    else:
        exact = [float(v) for v in np.asarray(sampler.timesteps, np.float64)]
        T, method = sampler.schedule.num_timesteps, sampler.kind
        dropped = "the skipped blocks" + (" and the GGDM coefficients" if sampler.ggdm_params is not None else "")
        skip = [list(s) for s in sampler.skip]
    rounded = [int(round(v)) for v in exact]
    distinct = all(a > b for a, b in zip(rounded, rounded[1:]))
    record = {"kind": TIMESTEPS_KIND, "format_version": FORMAT_VERSION, "timesteps": rounded if distinct else None,
              "exact_timesteps": exact, "num_train_timesteps": int(T), "num_steps": len(rounded),
              "sampler": method,
              "note": (f"Integer timesteps, noisiest first, for a scheduler's set_timesteps(timesteps=...). "
                       f"Only the times carry over: {dropped} need ddss.load_sampler." if distinct else
                       f"These times do not stay distinct when rounded to integers ({rounded}), so there is no "
                       "integer list for other tools; exact_timesteps holds the real-valued times.")}
    if skip is not None:
        record["skip"] = skip
    return record


def save_timesteps_json(path: str, sampler: LoadedSampler | EvolvedSampler) -> dict:
    """Writes `sampler`'s timesteps as plain JSON and returns the record:

      {"timesteps": [int, ...] (noisiest first; null when rounding would merge two times),
       "exact_timesteps": [float, ...], "num_train_timesteps": T, "num_steps": K, "sampler": ...,
       "skip": [[block, ...] per step] (searched samplers), "note": ...}

    For diffusers: `scheduler.set_timesteps(timesteps=record["timesteps"])` on a scheduler that takes a
    custom list (in diffusers 0.42, `DPMSolverMultistepScheduler` and `DDPMScheduler`; `DDIMScheduler`
    and `UniPCMultistepScheduler` do not)."""
    record = timesteps_record(sampler)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
    return record


def _load_evolved(path: str, tensors: dict, meta: dict, num_blocks: int | None) -> EvolvedSampler:
    t, mask = np.asarray(tensors["timesteps"]), np.asarray(tensors["skip_mask"]).astype(bool)
    if mask.shape != (len(t), meta["num_blocks"]) or len(t) != meta["num_steps"]:
        raise params_io.WeightFileError(f"{path} is corrupt: its header says K = {meta['num_steps']}, "
                                        f"L = {meta['num_blocks']}; its arrays have shapes {t.shape}, {mask.shape}.")
    if num_blocks is not None and meta["num_blocks"] != num_blocks:
        raise ValueError(f"{path} was searched for a network with {meta['num_blocks']} skippable blocks; this model "
                         f"has {num_blocks}. Its skip lists name blocks of that other network: search again for "
                         "this model.")
    schedule = schedules.Schedule(log_alpha_bar_table=tensors["schedule"]["log_alpha_bar_table"])
    try:
        skipping.check_timesteps(t, mask, schedule.num_timesteps)
    except ValueError as e:
        raise params_io.WeightFileError(f"{path} does not hold a valid searched sampler: {e}") from None
    template = None
    if meta["sampler"] == "ggdm" and "ggdm" in tensors:
        template = ggdm.GGDMParams(schedule=schedule, base_times=t.astype(np.float64), learned=tensors["ggdm"],
                                   family=meta["family"], base=meta["base"], eta=float(meta["eta"]))
    elif meta["sampler"] == "ggdm":
        template = ggdm.init(schedule, t.astype(np.float64), family="ggdm", base="dpm_solver++")
    skipping.check_sampler(meta["sampler"], template)
    return EvolvedSampler(kind=meta["sampler"], timesteps=t, skip=skipping.skip_lists(mask),
                          num_blocks=int(meta["num_blocks"]), schedule=schedule,
                          clip_denoised=bool(meta["clip_denoised"]), ggdm_params=template, metadata=meta)


def load_sampler(path: str, *, family: str | None = None, num_steps: int | None = None,
                 num_blocks: int | None = None) -> LoadedSampler | EvolvedSampler:
    """Reads a file written by `save_sampler` or `save_evolved_sampler`. `family`, `num_steps` and
    (searched samplers) `num_blocks`, when given, must match the file."""
    tensors, meta = params_io.load(path, what="sampler file",
                                   hint="Export one with `ddss --config=digits_ddss --workdir=DIR`.")
    if meta.get("kind") == EVOLVED_KIND:
        if num_steps is not None and meta["num_steps"] != num_steps:
            raise ValueError(f"{path} holds a K = {meta['num_steps']} sampler, not K = {num_steps}.")
        return _load_evolved(path, tensors, meta, num_blocks)
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

