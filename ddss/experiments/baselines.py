"""Score the training-free baseline samplers of a model at several K on held-out noise.

Writes, under the work directory (DESIGN.md §8):
  results.json                 {"rows": [{"method", "K", "nfe", "fid", "kid", "n_samples", "heldout", ...}]}
  samples/<method>_K<K>.npz    the scored samples (key `images`, NHWC float32)
  grids/<method>_K<K>.png      a sample grid per row
  fid_vs_k.png                 the score of each method against K

The ceiling (the model's own many-step sampler) is computed once per model and noise bank and
cached (`config.ceiling_cache`; the shipped digits model's ceiling ships with the package).

`config.model` picks the model and its scoring (`ddss.experiments.targets`): for the Gaussian
mixture the "fid" column is the Fréchet distance between the moments of the samples and the
mixture's *exact* moments, in data space (feature_space = "data"), and "kid" is KID against exact
mixture samples; for the digits model both are in the digits classifier's feature space against
all 1797 digits, and the `data` row is the test split against the train split. Each row's wall_time_s is the time to sample
its whole noise bank; the sampler is compiled beforehand, so compilation is not counted.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from ddss import schedules
from ddss.experiments import plots, targets
from ddss.samplers import ddim, ddpm, dpm_solver, raise_if_nonfinite

SHIPPED_CEILINGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "models", "assets", "ceilings")

# Method family names as they appear in results.json, mapped to (sampler module, init kwargs).
FAMILIES = {
    "ddpm": (ddpm, {}),
    "ddim": (ddim, {"eta": 0.0}),
    "dpm-solver++(2m)": (dpm_solver, {"order": 2}),
    "dpm-solver++(3m)": (dpm_solver, {"order": 3}),
}


@dataclasses.dataclass(frozen=True)
class GMMConfig:
    seed: int
    event_shape: tuple[int, ...]
    num_components: int


@dataclasses.dataclass(frozen=True)
class BaselinesConfig:
    seed: int
    model: str
    checkpoint: str
    schedule: str
    num_timesteps: int
    gmm: GMMConfig | None
    num_steps: tuple[int, ...]
    methods: tuple[str, ...]
    reference_steps: int
    num_samples: int
    batch_size: int
    clip_denoised: bool
    features: dict | None = None  # feature extractor config (ddss.metrics.features.from_config)
    reference_stats: str = ""  # stats.npz of the data in that feature space
    ceiling_cache: str = "~/.cache/ddss/ceilings"  # "" recomputes the many-step ceiling every run

    @classmethod
    def from_config(cls, config) -> "BaselinesConfig":
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        c.pop("experiment", None)
        c.setdefault("model", "gmm")
        c.setdefault("checkpoint", "")
        if c["model"] not in targets.MODELS:
            raise ValueError(f"Unknown model {c['model']!r}; choose one of {targets.MODELS}.")
        c.setdefault("schedule", "linear")  # the mixture's schedule; pretrained models bring their own
        c.setdefault("num_timesteps", 1000)
        if c["model"] == "gmm" and "gmm" not in c:
            raise ValueError("config.model='gmm' needs a config.gmm block (seed, event_shape, num_components).")
        gmm_cfg = c.get("gmm")
        c["gmm"] = GMMConfig(**{**gmm_cfg, "event_shape": tuple(gmm_cfg["event_shape"])}) if gmm_cfg else None
        c["num_steps"] = tuple(int(k) for k in c["num_steps"])
        c["methods"] = tuple(c["methods"])
        if c.get("features") is not None:
            c["features"] = ml_collections.ConfigDict(c["features"])
        cfg = cls(**c)
        for method in cfg.methods:
            parse_method(method)
        if cfg.num_samples < 2 or cfg.batch_size < 1:
            raise ValueError("num_samples must be ≥ 2 and batch_size ≥ 1.")
        return cfg


def parse_method(method: str):
    """'ddim-quadratic' → (ddim module, {'eta': 0.0}, 'quadratic')."""
    family, _, stride = method.rpartition("-")
    if family not in FAMILIES or stride not in schedules.STRIDES:
        raise ValueError(
            f"Unknown method {method!r}: write FAMILY-STRIDE with FAMILY in {sorted(FAMILIES)} "
            f"and STRIDE in {list(schedules.STRIDES)}."
        )
    module, kwargs = FAMILIES[family]
    return module, kwargs, stride


def make_schedule(name: str, num_timesteps: int) -> schedules.Schedule:
    makers = {"linear": schedules.linear_beta, "cosine": schedules.cosine}
    if name not in makers:
        raise ValueError(f"Unknown schedule {name!r}; choose one of {sorted(makers)}.")
    return makers[name](num_timesteps)


def sample_in_batches(sample_fn: Callable, params, noise_bank: np.ndarray, key, batch_size: int) -> np.ndarray:
    """Runs a jitted `sample_fn(params, x_K, key) -> (x_0, info)` over the noise bank, batch by batch.

    `params` may be a tuple (sampler params, model params); it is passed through unchanged."""
    outputs = []
    for start in range(0, len(noise_bank), batch_size):
        x0, info = sample_fn(params, noise_bank[start : start + batch_size], jax.random.fold_in(key, start))
        raise_if_nonfinite(info)  # one host read per batch, after its whole chain has run
        outputs.append(np.asarray(x0))
    return np.concatenate(outputs)


def compile_for_bank(sample_fn, params, noise_bank: np.ndarray, key, batch_size: int) -> None:
    """Compiles (without running) `sample_fn` for every batch shape of the bank, so that timing it
    afterwards measures sampling, not compilation."""
    sizes = {len(noise_bank[start:start + batch_size]) for start in range(0, len(noise_bank), batch_size)}
    for size in sizes:
        sample_fn.lower(params, noise_bank[:size], key).compile()


def _row(method, k, nfe, scores, n, wall_time, cfg) -> dict:
    return {"method": method, "K": k, "nfe": nfe, **scores, "n_samples": int(n), "heldout": True,
            "clip_denoised": cfg.clip_denoised, "wall_time_s": wall_time}


def make_target(cfg: BaselinesConfig, key) -> targets.Target:
    if cfg.model == "gmm":
        return targets.gmm_target(cfg.gmm, make_schedule(cfg.schedule, cfg.num_timesteps), cfg.num_samples, key)
    if cfg.model == "digits":
        return targets.digits_target(cfg.checkpoint)
    return targets.diffusers_target(cfg.checkpoint, cfg.features, cfg.reference_stats)


def run(config, workdir: str) -> dict:
    cfg = BaselinesConfig.from_config(config)
    target, noise_bank, key_sampler = setup(cfg, workdir)
    rows = baseline_rows(cfg, target, noise_bank, key_sampler, workdir)
    return finish(cfg, target, rows, workdir)


def setup(cfg: BaselinesConfig, workdir: str):
    """(target, held-out noise bank, sampler key): what every evaluating experiment scores against."""
    if cfg.model == "gmm":
        make_schedule(cfg.schedule, cfg.num_timesteps)  # a bad schedule name fails before any work
    key = jax.random.key(cfg.seed)
    key_noise, key_sampler, key_data = jax.random.split(key, 3)
    target = make_target(cfg, key_data)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "grids"), exist_ok=True)
    # Held-out noise: one bank shared by every method (common random numbers), used for nothing else.
    noise_bank = np.asarray(jax.random.normal(key_noise, (cfg.num_samples,) + tuple(target.image_shape)))
    return target, noise_bank, key_sampler


def baseline_rows(cfg: BaselinesConfig, target: targets.Target, noise_bank, key_sampler, workdir: str) -> list[dict]:
    """Scores every (method, K) and the many-step ceiling on the held-out bank; saves samples and grids."""
    schedule = target.schedule
    ceiling = f"ddpm-{cfg.reference_steps}"  # the model's own many-step sampler
    jobs = [(m, k) for m in cfg.methods for k in cfg.num_steps] + [(ceiling, cfg.reference_steps)]
    for _, k in jobs:
        schedules.timesteps(schedule, "linear", k)  # K out of range fails before any sampling
    # One jitted sampler per family: strides of the same family and K share one compilation. The
    # model's parameters are an argument, not a constant folded into the program.
    sample_fns = {
        module: jax.jit(
            lambda p, x, key_, module=module: module.sample(
                p[0], lambda x_, t_: target.apply(p[1], x_, t_), x, key_, clip_denoised=cfg.clip_denoised,
                return_info=True)
        )
        for module, _ in FAMILIES.values()
    }
    rows, device = [], jax.devices()[0].device_kind
    cache = ceiling_cache_path(cfg, target)
    for method, k in tqdm(jobs, desc="sampling", unit="row"):
        if method == ceiling and cache and os.path.exists(cache):
            with np.load(cache) as f:
                samples, wall, device_used = f["images"].astype(np.float32), float(f["wall_time_s"]), str(f["device"])
            rows.append({**_row(method, k, k, target.score(samples), len(samples), wall, cfg), "device": device_used,
                         "cached": os.path.abspath(cache)})
            save_samples(workdir, method, k, samples)
            continue
        module, kwargs, stride = parse_method("ddpm-linear" if method == ceiling else method)
        params = (module.init(schedule, schedules.timesteps(schedule, stride, k), **kwargs), target.params)
        compile_for_bank(sample_fns[module], params, noise_bank, key_sampler, cfg.batch_size)
        start = time.perf_counter()
        samples = sample_in_batches(sample_fns[module], params, noise_bank, key_sampler, cfg.batch_size)
        wall = time.perf_counter() - start
        if method == ceiling and cache:  # scored as stored, so a cached rerun gives the same row
            samples = samples.astype(np.float16).astype(np.float32)
        rows.append({**_row(method, k, k, target.score(samples), len(samples), wall, cfg), "device": device})
        save_samples(workdir, method, k, samples)
        if method == ceiling and cache:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            np.savez_compressed(cache, images=samples.astype(np.float16), wall_time_s=wall, device=device)
    return rows


def ceiling_cache_path(cfg: BaselinesConfig, target: targets.Target) -> str | None:
    """Where the ceiling's samples are cached: one file per (model, schedule, steps, noise bank, clipping).

    The shipped default model's file lives in the package (`ddss/models/assets/ceilings/`); others
    go to `cfg.ceiling_cache` ("" turns caching off). Samples are stored as float16 (5e-4 rounding).
    """
    if not cfg.ceiling_cache:
        return None
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves((target.params, target.schedule)):
        digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    digest.update(repr((target.name, cfg.gmm, tuple(target.image_shape))).encode())
    name = (f"{target.name.split(':')[0]}-{digest.hexdigest()[:16]}-ddpm{cfg.reference_steps}-n{cfg.num_samples}"
            f"-seed{cfg.seed}-clip{int(cfg.clip_denoised)}.npz")
    shipped = os.path.join(SHIPPED_CEILINGS, name)
    return shipped if os.path.exists(shipped) else os.path.join(os.path.expanduser(cfg.ceiling_cache), name)


def finish(cfg: BaselinesConfig, target: targets.Target, rows: list[dict], workdir: str, **extra) -> dict:
    """Adds the data floor, writes results.json and the score-vs-K plot, prints the table."""
    device = jax.devices()[0].device_kind
    if target.floor is not None:
        rows.append({**_row("data", 0, 0, target.score_floor(), len(target.floor[0]), 0.0, cfg), "device": device})
        save_samples(workdir, "data", 0, np.asarray(target.floor[0]))
    results = {"model": target.name, "schedule": cfg.schedule if cfg.model == "gmm" else "checkpoint", **extra,
               "rows": rows}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    if target.features is not None:
        ylabel = "Fréchet distance to the exact mixture" if cfg.model == "gmm" else f"FID ({target.feature_space})"
        plots.score_vs_k(rows, os.path.join(workdir, "fid_vs_k.png"), ylabel=ylabel)
    print(format_table(rows))
    return results


def save_samples(workdir: str, method: str, k: int, samples: np.ndarray) -> None:
    name = f"{method}_K{k}"
    np.savez_compressed(os.path.join(workdir, "samples", f"{name}.npz"), images=samples.astype(np.float32))
    plots.sample_grid(samples[:64], os.path.join(workdir, "grids", f"{name}.png"))


def format_table(rows) -> str:
    """A markdown table of the rows (method, K, FID, KID, and IS when rows have it)."""
    num = lambda v, f: "n/a" if v is None else format(v, f)
    columns = [("fid", ".4g"), ("kid", ".3g")] + ([("is", ".3g")] if any(r.get("is") is not None for r in rows) else [])
    lines = ["| method | K | " + " | ".join(c for c, _ in columns) + " |", "|---|---|" + "---|" * len(columns)]
    lines += [f"| {r['method']} | {r['K']} | " + " | ".join(num(r.get(c), f) for c, f in columns) + " |" for r in rows]
    return "\n".join(lines)
