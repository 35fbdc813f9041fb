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

from ddss import parallel, schedules
from ddss.models import params_io
from ddss.samplers import ggdm, loop, skipping

TIMESTEPS_KIND = "ddss_timesteps"
KIND = "ddss_sampler"
EVOLVED_KIND = "ddss_evolved_sampler"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)  # the sampler-file versions this code reads


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


def model_record(sha256: str, *, num_classes: int = 0, guidance: dict | None = None) -> dict:
    """What a sampler file records of the model it was learned or searched for: the model's identity
    (sha256 of its weight files and schedule), its classes, and the guidance (kind and scale) its ε had.
    `load_sampler(..., model_sha256=, guidance_scale=)` refuses the file for another model or scale."""
    return {"sha256": str(sha256), "num_classes": int(num_classes), "guidance": guidance,
            "guidance_scale": None if guidance is None else float(guidance["scale"])}


def save_sampler(path: str, params: ggdm.GGDMParams, *, clip_denoised: bool, info: dict | None = None,
                 model: dict | None = None) -> None:
    """Writes a learned GGDM-family sampler; `info` (JSON-able) records how it was made, `model`
    (`model_record`) the model and guidance it was learned for."""
    ggdm.check_params(params)
    tensors = {"learned": {k: np.asarray(v, np.float32) for k, v in params.learned.items()},
               "base_times": np.asarray(params.base_times, np.float64),
               "schedule": {"log_alpha_bar_table": np.asarray(params.schedule.log_alpha_bar_table, np.float64)}}
    meta = {"kind": KIND, "format_version": FORMAT_VERSION, "family": params.family, "base": params.base,
            "eta": params.eta, "num_steps": params.num_steps, "clip_denoised": bool(clip_denoised),
            "info": info or {}, **({"model": model} if model else {})}
    params_io.save(path, tensors, meta)
    save_timesteps_json(timesteps_json_path(path), LoadedSampler(params=params, clip_denoised=clip_denoised,
                                                                 metadata=meta))


@dataclasses.dataclass(frozen=True)
class EvolvedSampler:
    """A searched sampler: `kind` (ddim | dpm_solver++ | unipc | unipc3 | ggdm; `skipping.SAMPLERS`) at
    integer `timesteps` (τ_K > ... > τ_1), skipping the blocks `skip[k]` at step k, for a network with
    `num_blocks` skippable blocks."""

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
                         info: dict | None = None, model: dict | None = None) -> None:
    """Writes a searched sampler: timesteps [K] (integers; stored noisiest first, each skip row kept with
    its timestep), skip mask [K, L] (True = skip), the sampler kind; `model` as in `save_sampler`."""
    t, mask = np.asarray(timesteps), np.asarray(skip_mask, bool)
    if t.ndim != 1 or mask.ndim != 2 or mask.shape[0] != len(t):
        raise ValueError(f"Need timesteps [K] and a skip mask [K, L]; got shapes {t.shape} and {mask.shape}.")
    order = np.argsort(-t, kind="stable")  # noisiest first, each skip row kept with its timestep
    t, mask = t[order], mask[order]
    skipping.check_timesteps(t, mask, schedule.num_timesteps)
    tensors = {"timesteps": t.astype(np.int64), "skip_mask": mask.astype(np.uint8),
               "schedule": {"log_alpha_bar_table": np.asarray(schedule.log_alpha_bar_table, np.float64)}}
    meta = {"kind": EVOLVED_KIND, "format_version": FORMAT_VERSION, "sampler": kind, "num_steps": len(t),
            "num_blocks": int(mask.shape[1]), "clip_denoised": bool(clip_denoised), "info": info or {},
            **({"model": model} if model else {})}
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
    if parallel.is_main_process():  # a multi-host run writes once
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    return record


# ---------------------------------------------------------------------------------------------------------------
# Loading: every way a file can be wrong gives one SamplerFileError (a ValueError) naming the path, the problem
# and the fix.

class SamplerFileError(params_io.WeightFileError):
    """A sampler file is missing, damaged, of another kind, or not the sampler that was asked for."""


class SamplerFileNotFoundError(SamplerFileError, FileNotFoundError):
    """The sampler file does not exist (also a FileNotFoundError)."""


class NonFiniteSamplerError(SamplerFileError, FloatingPointError):
    """The file's arrays hold NaN or inf (also a FloatingPointError)."""


EXPECT = {"learned": KIND, "searched": EVOLVED_KIND}  # load_sampler(expect=...) -> the header kind it needs
_KIND_NAMES = {KIND: ("a learned GGDM-family sampler export", "written by a DDSS run or ddss.save_sampler"),
               EVOLVED_KIND: ("a searched sampler export",
                              "written by an evolution search or ddss.save_evolved_sampler")}
_OTHER_KINDS = {  # header kinds of other ddss files -> what reads them
    "unet": "a ddss UNet weight file: load it with ddss.models.pretrained.load",
    "digits_classifier": "the digits classifier's weights, not a sampler",
    "digits_eval_features": "the digits evaluation network's weights, not a sampler",
}
_REQUIRED = {  # header fields each kind needs (beyond kind and format_version)
    KIND: ("family", "base", "eta", "num_steps", "clip_denoised"),
    EVOLVED_KIND: ("sampler", "num_steps", "num_blocks", "clip_denoised"),
}
_MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


def _recover(path: str) -> str:
    """How to get a good copy of a damaged sampler file back."""
    assets = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models", "assets")
    if os.path.abspath(path).startswith(assets + os.sep):
        return "It ships with ddss: reinstall ddss (pip install --force-reinstall ddss)."
    return ("To recover: delete it and rerun the command that wrote it with the same --workdir (the run re-exports "
            "from its checkpoint in runs/<run>/checkpoints/ without training or searching again), or write it again "
            "with ddss.save_sampler / ddss.save_evolved_sampler.")


def safetensors_problem(path: str) -> str | None:
    """What is wrong with an existing file that should be safetensors, as a phrase that follows its path
    ("is truncated: ..."), or None when its layout is sound. Reads the bytes only; nothing is unpickled."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(64)
        if size == 0:
            return "is empty (0 bytes): it was cut short while being written (a killed run or a full disk)"
        n = int.from_bytes(head[:8], "little") if size >= 8 else None
        if n is None or n > _MAX_HEADER or (size > 8 and head[8:9] != b"{"):  # no safetensors header: what is it?
            stripped = head.lstrip()
            if head.startswith(b"version https://git-lfs"):
                return "is a Git LFS pointer, not the file itself: fetch it with `git lfs pull`"
            if head.startswith(b"PK\x03\x04"):
                return ("is a zip archive (torch.save's .pt/.pth/.bin format, or a numpy .npz), not safetensors; ddss "
                        "never unpickles files")
            if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
                return "is a Python pickle (e.g. an old torch.save file), not safetensors; ddss never unpickles files"
            if head.startswith(b"\x93NUMPY"):
                return "is a numpy .npy array, not safetensors"
            if stripped[:1] in (b"{", b"["):
                return "is a JSON text file, not safetensors (a .timesteps.json twin? pass the .safetensors file)"
            if stripped[:1] == b"<":
                return "is an HTML/XML page (a failed download?), not safetensors"
            if n is None:
                return f"is only {size} bytes, too short for a safetensors file: it is truncated or not safetensors"
            return f"is corrupt or not a safetensors file: its first bytes {head[:8]!r} are no safetensors header"
        if size < 8 + n:
            return (f"is truncated: it has {size} bytes, but its safetensors header alone is {n} bytes long "
                    "(the file was cut short)")
        f.seek(8)
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        return f"has a damaged safetensors header (not valid JSON: {e})"
    if not isinstance(header, dict):
        return "has a damaged safetensors header (not a JSON object)"
    try:
        end = max([int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"], default=0)
    except (KeyError, IndexError, TypeError, ValueError):
        return "has a damaged safetensors header (a tensor entry without valid data_offsets)"
    total = 8 + n + end
    if size < total:
        return (f"is truncated: it has {size} bytes, but its header describes {total} "
                f"({total - size} bytes are missing: the file was cut short)")
    if size > total:
        return (f"is damaged: it has {size - total} unexpected bytes after its last tensor "
                f"({size} bytes, {total} expected)")
    return None


def _read(path: str) -> tuple[dict, dict]:
    """(tensors, decoded header) of a sampler file, or one SamplerFileError naming the path and the fix."""
    if not os.path.exists(path):
        raise SamplerFileNotFoundError(
            f"Sampler file not found: {path}. Check the path: a DDSS run writes DIR/runs/<family>_K<K>/"
            "sampler.safetensors and a search DIR/runs/evolution-<search>_B<K>/sampler.safetensors.")
    if os.path.isdir(path):
        raise SamplerFileError(f"{path} is a directory, not a sampler file: pass the sampler.safetensors inside it.")
    problem = safetensors_problem(path)
    if problem:
        raise SamplerFileError(f"Sampler file {path} {problem}. {_recover(path)}")
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            raw = f.metadata() or {}
    except Exception as e:  # safetensors raises several types for damaged files
        raise SamplerFileError(f"Sampler file {path} is damaged or not a safetensors file ({e}). "
                               f"{_recover(path)}") from None
    for key, value in raw.items():
        try:
            json.loads(value)
        except ValueError as e:
            raise SamplerFileError(f"Sampler file {path} has a damaged header: field {key!r} is not JSON ({e}; "
                                   f"value {value[:40]!r}). {_recover(path)}") from None
    try:
        return params_io.load(path, what="sampler file")
    except params_io.WeightFileError as e:
        raise SamplerFileError(f"Sampler file {path} is damaged ({e.__cause__ or e}). {_recover(path)}") from None


def _versions() -> str:
    return ", ".join(map(str, SUPPORTED_FORMAT_VERSIONS))


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(path: str, meta: dict) -> str:
    """The file's kind, after checking its kind, format version and required header fields."""
    kind = meta.get("kind")
    if not isinstance(kind, str) or kind not in _REQUIRED:
        if kind is None:
            found = ("its header has no 'kind' field" if meta else "it has no ddss header")
            raise SamplerFileError(f"{path} is not a ddss sampler file: {found}, so it was not written by "
                                   "ddss.save_sampler or ddss.save_evolved_sampler. Pass a run's sampler.safetensors.")
        what = _OTHER_KINDS.get(kind, "not a sampler") if isinstance(kind, str) else "not a sampler"
        raise SamplerFileError(f"{path} is not a ddss sampler file: its header's kind is {kind!r} ({what}); a "
                               f"sampler file has kind {KIND!r} or {EVOLVED_KIND!r}.")
    if "format_version" not in meta:
        raise SamplerFileError(f"{path} has no 'format_version' in its header (a {kind} file needs one): the header "
                               f"is damaged. {_recover(path)}")
    version = meta["format_version"]
    if _is_int(version) and version > FORMAT_VERSION:
        raise SamplerFileError(f"{path} has format_version {version}, written by a newer ddss: this ddss reads "
                               f"format_version {_versions()} only. Upgrade ddss "
                               "(pip install -U ddss) to load it.")
    if version not in SUPPORTED_FORMAT_VERSIONS or not _is_int(version):
        raise SamplerFileError(f"{path} has format_version {version!r}, which no ddss writes (this one reads "
                               f"{_versions()}): the header is damaged. {_recover(path)}")
    needed = _REQUIRED[kind]
    for field in needed:
        if field not in meta:
            raise SamplerFileError(f"{path} has no {field!r} field in its header (a {kind} file needs "
                                   f"{', '.join(needed)}): the header is damaged or was edited. {_recover(path)}")

    def bad(field, want):
        raise SamplerFileError(f"{path} has a damaged header: {field} is {meta[field]!r} "
                               f"({type(meta[field]).__name__}); it must be {want}. {_recover(path)}")

    if not _is_int(meta["num_steps"]) or meta["num_steps"] < 1:
        bad("num_steps", "a positive integer (K)")
    if not isinstance(meta["clip_denoised"], bool):
        bad("clip_denoised", "true or false")
    ggdm_fields = kind == KIND or (meta["sampler"] == "ggdm" and any(f in meta for f in ("family", "base", "eta")))
    if kind == EVOLVED_KIND:
        if meta["sampler"] not in skipping.SAMPLERS:
            bad("sampler", f"one of {skipping.SAMPLERS}")
        if not _is_int(meta["num_blocks"]) or meta["num_blocks"] < 0:
            bad("num_blocks", "a non-negative integer (L)")
        if ggdm_fields:
            for field in ("family", "base", "eta"):
                if field not in meta:
                    raise SamplerFileError(f"{path} has no {field!r} field in its header (a searched GGDM sampler "
                                           "needs family, base and eta): the header is damaged or was edited. "
                                           f"{_recover(path)}")
    if ggdm_fields:
        if meta["family"] not in ggdm.FAMILIES:
            bad("family", f"one of {ggdm.FAMILIES}")
        if meta["base"] not in ggdm.BASES:
            bad("base", f"one of {ggdm.BASES}")
        eta = meta["eta"]
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0.0 <= eta <= 1.0:
            bad("eta", "a number in [0, 1] (DDIM's η)")
    return kind


def _tensor(path: str, tensors: dict, name: str, kind: str) -> np.ndarray:
    node = tensors
    for part in name.split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, np.ndarray):
        holds = ("learned/<name>, base_times and schedule/log_alpha_bar_table" if kind == KIND else
                 "timesteps, skip_mask and schedule/log_alpha_bar_table")
        raise SamplerFileError(f"{path} has no {name!r} tensor (a {kind} file holds {holds}): the file is damaged "
                               f"or was edited. {_recover(path)}")
    return node


def _group(path: str, tensors: dict, name: str, kind: str) -> dict:
    node = tensors.get(name)
    if not isinstance(node, dict) or not all(isinstance(v, np.ndarray) for v in node.values()):
        raise SamplerFileError(f"{path} has no {name}/<name> tensors (a {kind} file holds its GGDM arrays there): "
                               f"the file is damaged or was edited. {_recover(path)}")
    return node


def _check_finite(path: str, arrays: dict[str, np.ndarray]) -> None:
    bad = [name for name, v in arrays.items() if np.issubdtype(v.dtype, np.floating) and not np.all(np.isfinite(v))]
    if bad:
        raise NonFiniteSamplerError(f"{path} holds NaN or inf in {bad}: the sampler is invalid (its training "
                                    f"diverged, or the file is damaged). {_recover(path)}")


def _schedule(path: str, table: np.ndarray) -> schedules.Schedule:
    if table.ndim != 1 or len(table) < 2:
        raise SamplerFileError(f"{path} has a damaged schedule: schedule/log_alpha_bar_table has shape {table.shape}, "
                               f"not [T] with T ≥ 2. {_recover(path)}")
    if np.any(table >= 0) or np.any(np.diff(table) >= 0):
        raise SamplerFileError(f"{path} has a damaged schedule: schedule/log_alpha_bar_table must be negative and "
                               f"strictly decreasing (log ᾱ_t, t = 0..T−1). {_recover(path)}")
    return schedules.Schedule(log_alpha_bar_table=table)


def _mismatch(path, found: str, expected: str, fix: str) -> SamplerFileError:
    return SamplerFileError(f"{path} holds {found}, not {expected}: {fix}")


def _load_evolved(path: str, tensors: dict, meta: dict, family: str | None, num_steps: int | None,
                  num_blocks: int | None) -> EvolvedSampler:
    K, L, kind = meta["num_steps"], meta["num_blocks"], meta["sampler"]
    file_family = meta.get("family", "ggdm") if kind == "ggdm" else None  # a GGDM search without a file: DPM-Solver++
    if family is not None and file_family != family:
        found = (f"a searched {kind} sampler of GGDM family {file_family}" if file_family else
                 f"a searched {kind} sampler (no GGDM family)")
        raise _mismatch(path, found, f"a {family} sampler", "pass the export of the sampler you mean, or load "
                        "this one without family=" + (f" (or with family={file_family!r})." if file_family else "."))
    if num_steps is not None and K != num_steps:
        raise _mismatch(path, f"a K = {K} sampler", f"K = {num_steps}", f"search again with K = {num_steps} "
                        "(config.searches), or load this one without num_steps=.")
    if num_blocks is not None and L != num_blocks:
        raise SamplerFileError(f"{path} was searched for a network with {L} skippable blocks; this model has "
                               f"{num_blocks}. Its skip lists name blocks of that other network: search again for "
                               "this model.")
    t = _tensor(path, tensors, "timesteps", EVOLVED_KIND)
    mask = _tensor(path, tensors, "skip_mask", EVOLVED_KIND)
    table = _tensor(path, tensors, "schedule/log_alpha_bar_table", EVOLVED_KIND)
    learned = _group(path, tensors, "ggdm", EVOLVED_KIND) if kind == "ggdm" and "ggdm" in tensors else None
    if t.shape != (K,) or mask.shape != (K, L):
        raise SamplerFileError(f"{path} is damaged: its header says K = {K}, L = {L}, but its arrays have shapes "
                               f"timesteps {t.shape} and skip_mask {mask.shape} (need ({K},) and ({K}, {L})). "
                               f"{_recover(path)}")
    _check_finite(path, {"timesteps": t, "schedule/log_alpha_bar_table": table,
                         **{f"ggdm/{k}": v for k, v in (learned or {}).items()}})
    if not np.all((mask == 0) | (mask == 1)):
        raise SamplerFileError(f"{path} is damaged: skip_mask holds values other than 0 and 1. {_recover(path)}")
    schedule = _schedule(path, table)
    mask = mask.astype(bool)
    try:
        skipping.check_timesteps(t, mask, schedule.num_timesteps)
    except ValueError as e:
        raise SamplerFileError(f"{path} does not hold a valid searched sampler: {e} {_recover(path)}") from None
    template = None
    if learned is not None:
        template = ggdm.GGDMParams(schedule=schedule, base_times=t.astype(np.float64), learned=learned,
                                   family=meta["family"], base=meta["base"], eta=float(meta["eta"]))
        try:
            ggdm.check_params(template)
        except ValueError as e:
            raise SamplerFileError(f"{path} does not hold a valid searched {meta['family']} sampler: {e} "
                                   f"{_recover(path)}") from None
    elif kind == "ggdm":
        template = ggdm.init(schedule, t.astype(np.float64), family="ggdm", base="dpm_solver++")
    try:
        skipping.check_sampler(kind, template)
    except ValueError as e:
        raise SamplerFileError(f"{path}: {e}") from None
    return EvolvedSampler(kind=kind, timesteps=t, skip=skipping.skip_lists(mask), num_blocks=int(L),
                          schedule=schedule, clip_denoised=bool(meta["clip_denoised"]), ggdm_params=template,
                          metadata=meta)


def _load_learned(path: str, tensors: dict, meta: dict, family: str | None,
                  num_steps: int | None) -> LoadedSampler:
    K = meta["num_steps"]
    if family is not None and meta["family"] != family:
        raise _mismatch(path, f"a {meta['family']} sampler", family, f"export the {family} sampler, or load this "
                        f"one with family={meta['family']!r}.")
    if num_steps is not None and K != num_steps:
        raise _mismatch(path, f"a K = {K} sampler", f"K = {num_steps}", "its steps and coefficients only work "
                        f"together. Train or export one for K = {num_steps}.")
    learned = _group(path, tensors, "learned", KIND)
    base_times = _tensor(path, tensors, "base_times", KIND)
    table = _tensor(path, tensors, "schedule/log_alpha_bar_table", KIND)
    if base_times.shape != (K,):
        raise SamplerFileError(f"{path} is damaged: its header says K = {K}, but base_times has shape "
                               f"{base_times.shape}, not ({K},). {_recover(path)}")
    _check_finite(path, {"base_times": base_times, "schedule/log_alpha_bar_table": table,
                         **{f"learned/{k}": v for k, v in learned.items()}})
    schedule = _schedule(path, table)
    params = ggdm.GGDMParams(schedule=schedule, base_times=base_times, learned=learned,
                             family=meta["family"], base=meta["base"], eta=float(meta["eta"]))
    try:
        loop.check_timesteps(base_times, schedule.num_timesteps)
        ggdm.check_params(params)
    except ValueError as e:
        raise SamplerFileError(f"{path} does not hold a valid {meta['family']} sampler (K = {K}): {e} "
                               f"{_recover(path)}") from None
    return LoadedSampler(params=params, clip_denoised=bool(meta["clip_denoised"]), metadata=meta)


def check_model(path: str, meta: dict, model_sha256: str | None = None, guidance_scale: float | None = None) -> None:
    """Refuses a sampler file recorded for another model, or another guidance scale (None: unguided).
    A file without a model record (written by hand, without `model=`) cannot be checked and passes."""
    record = meta.get("model")
    if not record:
        return
    if model_sha256 is not None and record.get("sha256") != model_sha256:
        raise SamplerFileError(f"{path} was learned or searched for another model (sha256 {record.get('sha256')}, "
                               f"not {model_sha256}): its steps and coefficients fit that model only. Learn or "
                               "search one for this model.")
    if guidance_scale is not None or model_sha256 is not None:
        want = None if not guidance_scale else float(guidance_scale)
        have = record.get("guidance_scale")
        if have != want:
            said = lambda s: "no guidance" if s is None else f"guidance scale {s}"
            raise SamplerFileError(f"{path} was learned or searched with {said(have)}, but it is used here with "
                                   f"{said(want)}: a sampler's steps fit the guided ε it saw. Use the same scale "
                                   "(config.adm.classifier_scale), or learn or search one at this scale.")


def load_sampler(path: str, *, family: str | None = None, num_steps: int | None = None,
                 num_blocks: int | None = None, expect: str | None = None, model_sha256: str | None = None,
                 guidance_scale: float | None = None) -> LoadedSampler | EvolvedSampler:
    """Reads a file written by `save_sampler` or `save_evolved_sampler`. `family`, `num_steps` and
    (searched samplers) `num_blocks`, when given, must match the file: a searched sampler's family is
    its GGDM's (only `sampler = "ggdm"` has one). `expect` ("learned": a `LoadedSampler`, "searched":
    an `EvolvedSampler`) refuses the other kind. `model_sha256` and `guidance_scale` (0 or None:
    unguided), when given, must match the model record of the file (`check_model`).

    Any problem raises one `SamplerFileError` (a ValueError; `SamplerFileNotFoundError`, also a
    FileNotFoundError, for a missing file; `NonFiniteSamplerError`, also a FloatingPointError, for
    NaN or inf) whose message names the path, what is wrong and how to fix it."""
    if expect is not None and expect not in EXPECT:
        raise ValueError(f"expect={expect!r}: choose one of {tuple(EXPECT)} (or None for either).")
    tensors, meta = _read(path)
    kind = _check_header(path, meta)
    check_model(path, meta, model_sha256, guidance_scale)
    if expect is not None and kind != EXPECT[expect]:
        (found, wrote), (wanted, writes) = _KIND_NAMES[kind], _KIND_NAMES[EXPECT[expect]]
        search = f", a {meta['sampler']} search" if kind == EVOLVED_KIND else ""
        raise SamplerFileError(
            f"{path} is {found} (kind {kind!r}{search}, {wrote}), but {wanted} (kind {EXPECT[expect]!r}, {writes}) is "
            "expected here: pass " + ("a DDSS run's runs/<family>_K<K>/sampler.safetensors." if expect == "learned"
                                      else "a search's runs/evolution-<search>_B<K>/sampler.safetensors."))
    if kind == EVOLVED_KIND:
        return _load_evolved(path, tensors, meta, family, num_steps, num_blocks)
    return _load_learned(path, tensors, meta, family, num_steps)


def load_ggdm_sampler(path: str, *, family: str | None = None, num_steps: int | None = None) -> LoadedSampler:
    """A learned GGDM-family sampler (a DDSS export); any other file, a searched sampler included, is refused
    with one clear error. Same as `load_sampler(path, expect="learned", ...)`."""
    return load_sampler(path, family=family, num_steps=num_steps, expect="learned")
