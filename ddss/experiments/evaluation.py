"""The evaluation harness: how every experiment (baselines, DDSS, evolution) scores samplers.

One protocol for every row of every `results.json`:

  * **Held-out noise.** One bank of `num_samples` draws per run, shared by every method (common
    random numbers), from `jax.random.key(eval_seed)`. Evaluation seeds live in [0, 2**20);
    training, validation and fitness noise come from `training_key(seed)`, i.e. seeds in
    [2**20, 2**21), so no objective ever sees an evaluation draw. `results.json` records both.
  * **Scoring** (`ddss.experiments.targets`): samples quantised to uint8 (image targets), then
    FID, precision and recall (k-NN, k = 3), KID and IS in the *evaluation* space, which no loss,
    validation or fitness uses, and the FID in the *train* space beside it. Every row names both
    feature networks with the sha256 of their weights, and the sample count.
  * **Comparison.** Each learned or searched row records the *best* training-free row at its K
    (lowest evaluation FID) and its ratio to it.

It writes, under the work directory:
  results.json                 {"rows": [{"method", "K", "nfe", "fid", "fid_train_space", "precision",
                               "recall", "kid", "n_samples", "eval_features", "train_features", ...}], ...}
  samples/<method>_K<K>.npz    the scored samples (key `images`, NHWC float32, before quantisation)
  grids/<method>_K<K>.png      a sample grid per row
  fid_vs_k.png                 the evaluation FID of each method against K

The many-step ceiling (the model's own sampler) is computed once per model and noise bank and
cached (`config.ceiling_cache`; the shipped digits model's ceiling ships with the package). Each
row's wall_time_s is the time to sample its whole noise bank; samplers are compiled beforehand, so
compilation is not counted.
"""
from __future__ import annotations

import hashlib
import os
import time
from typing import Callable

import jax
import numpy as np
from tqdm import tqdm

from ddss import export, parallel, schedules
from ddss.experiments import plots, targets, writers
from ddss.samplers import conditioning, ddim, ddpm, dpm_solver, ipndm, raise_if_nonfinite, unipc

SHIPPED_CEILINGS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "models", "assets", "ceilings")
SEED_SPAN = 2**20  # evaluation seeds: [0, SEED_SPAN); training, validation and fitness seeds: [SEED_SPAN, 2·SEED_SPAN)

# Training-free method families as they appear in results.json: (sampler module, init kwargs).
# A method is FAMILY-STRIDE, e.g. "unipc(bh2,3)-logsnr".
BASELINE_METHODS = {
    "ddpm": (ddpm, {}),
    "ddim": (ddim, {"eta": 0.0}),
    "dpm-solver++(2m)": (dpm_solver, {"order": 2}),
    "dpm-solver++(3m)": (dpm_solver, {"order": 3}),
    "unipc(bh2,2)": (unipc, {"order": 2}),
    "unipc(bh2,3)": (unipc, {"order": 3}),
    "ipndm": (ipndm, {"order": 4}),
}


def check_seeds(seed: int, eval_seed: int) -> None:
    for name, value in (("seed", seed), ("eval_seed", eval_seed)):
        if not 0 <= int(value) < SEED_SPAN:
            raise ValueError(f"config.{name} must lie in [0, {SEED_SPAN}), got {value}.")


def training_key(seed: int) -> jax.Array:
    """The root key of every training, validation and fitness stream: disjoint from evaluation keys."""
    return jax.random.key(SEED_SPAN + int(seed))


def parse_method(method: str):
    """'ddim-quadratic' → (ddim module, {'eta': 0.0}, 'quadratic')."""
    family, _, stride = method.rpartition("-")
    if family not in BASELINE_METHODS or stride not in schedules.STRIDES:
        raise ValueError(
            f"Unknown method {method!r}: write FAMILY-STRIDE with FAMILY in {sorted(BASELINE_METHODS)} "
            f"and STRIDE in {list(schedules.STRIDES)}."
        )
    module, kwargs = BASELINE_METHODS[family]
    return module, kwargs, stride


def is_training_free(method: str) -> bool:
    try:
        parse_method(method)
    except ValueError:
        return False
    return True


def sample_in_batches(sample_fn: Callable, params, noise_bank: np.ndarray, key, batch_size: int) -> np.ndarray:
    """Runs a jitted `sample_fn(params, x_K, key) -> (x_0, info)` over the noise bank, batch by batch,
    each batch split over the current mesh's data axis (`ddss.parallel`; padded to a multiple of it).

    `params` may be a tuple (sampler params, model params); it is passed through unchanged."""
    outputs = []
    for start in range(0, len(noise_bank), batch_size):
        batch, n = parallel.put_batch(noise_bank[start : start + batch_size])
        x0, info = sample_fn(params, batch, jax.random.fold_in(key, start))
        raise_if_nonfinite(info)  # one host read per batch, after its whole chain has run
        outputs.append(parallel.to_host(x0)[:n])
    return np.concatenate(outputs)


def compile_for_bank(sample_fn, params, noise_bank: np.ndarray, key, batch_size: int) -> None:
    """Compiles (without running) `sample_fn` for every batch shape of the bank, so that timing it
    afterwards measures sampling, not compilation."""
    sizes = {len(noise_bank[start:start + batch_size]) for start in range(0, len(noise_bank), batch_size)}
    for size in sizes:
        sample_fn.lower(params, parallel.put_batch(noise_bank[:size])[0], key).compile()


def timed_samples(sample_fn, params, noise_bank, key, batch_size) -> tuple[np.ndarray, float]:
    """(samples of the whole bank, wall time of sampling it), compiled beforehand."""
    compile_for_bank(sample_fn, params, noise_bank, key, batch_size)
    start = time.perf_counter()
    samples = sample_in_batches(sample_fn, params, noise_bank, key, batch_size)
    return samples, time.perf_counter() - start


def row(method, k, nfe, scores, n, wall_time, cfg) -> dict:
    return {"method": method, "K": k, "nfe": nfe, **scores, "n_samples": int(n), "heldout": True,
            "clip_denoised": cfg.clip_denoised, "wall_time_s": wall_time, "device": jax.devices()[0].device_kind}


def make_target(cfg, key) -> targets.Target:
    if cfg.model == "gmm":
        return targets.gmm_target(cfg.gmm, make_schedule(cfg.schedule, cfg.num_timesteps), cfg.num_samples, key,
                                  schedule_name=cfg.schedule)
    if cfg.model == "digits":
        return targets.digits_target(cfg.checkpoint)
    if cfg.model == "adm":
        return targets.adm_target(cfg.checkpoint, cfg.adm or {}, cfg.features, cfg.reference_stats,
                                  cfg.eval_features, cfg.eval_reference_stats)
    return targets.diffusers_target(cfg.checkpoint, cfg.features, cfg.reference_stats, cfg.eval_features,
                                    cfg.eval_reference_stats)


def make_schedule(name: str, num_timesteps: int) -> schedules.Schedule:
    makers = {"linear": schedules.linear_beta, "cosine": schedules.cosine}
    if name not in makers:
        raise ValueError(f"Unknown schedule {name!r}; choose one of {sorted(makers)}.")
    return makers[name](num_timesteps)


def setup(cfg, workdir: str):
    """(target, held-out noise bank, sampler key): what every evaluating experiment scores against.

    A class-conditional target's bank is `conditioning.Labelled(noise, labels)`, its labels drawn as
    `cfg.class_labels` says ("uniform": each class equally often; "random": i.i.d.) from the bank's own key."""
    check_seeds(cfg.seed, cfg.eval_seed)
    if cfg.model == "gmm":
        make_schedule(cfg.schedule, cfg.num_timesteps)  # a bad schedule name fails before any work
    key_noise, key_sampler, key_data = jax.random.split(jax.random.key(cfg.eval_seed), 3)
    target = make_target(cfg, key_data)
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "grids"), exist_ok=True)
    # Held-out noise: one bank shared by every method (common random numbers), used for nothing else.
    noise_bank = np.asarray(jax.random.normal(key_noise, (cfg.num_samples,) + tuple(target.image_shape)))
    return target, labelled(target, noise_bank, key_noise, cfg.class_labels), key_sampler


def labelled(target: targets.Target, noise, key, draw: str = "uniform"):
    """A class-conditional target's noise with its labels, drawn from `key` (`conditioning.draw`); plain
    noise for an unconditional target."""
    if not target.num_classes:
        return noise
    return conditioning.Labelled(noise, conditioning.draw(draw, len(noise), target.num_classes,
                                                          jax.random.fold_in(key, 1)))


def model_fns(target: targets.Target, model_params, batch):
    """(x_K, ε(x, t), the ancestral sampler's (model function, cond_fn)) of one batch of the bank: its
    labels, if any, bound into the model functions."""
    x, y = conditioning.split(batch)
    eps = lambda x_, t_: target.apply(model_params, x_, t_, y)
    own = (lambda x_, t_: target.apply_ancestral(model_params, x_, t_, y)) if target.apply_ancestral else eps
    cond = (lambda x_, t_: target.cond_fn(model_params, x_, t_, y)) if target.cond_fn else None
    return x, eps, (own, cond)


def score_row(target: targets.Target, cfg, method: str, k: int, samples: np.ndarray, wall: float, workdir: str,
              **extra) -> dict:
    """Scores one method's samples of the held-out bank, saves them and their grid; returns the row."""
    out = {**row(method, k, extra.pop("nfe", k), target.score(samples), len(samples), wall, cfg), **extra}
    save_samples(workdir, method, k, samples)
    return out


def baseline_rows(cfg, target: targets.Target, noise_bank, key_sampler, workdir: str) -> list[dict]:
    """Scores every (method, K) and the many-step ceiling (unless `reference_steps` is 0) on the held-out
    bank; saves samples and grids."""
    schedule = target.schedule
    ceiling = f"ddpm-{cfg.reference_steps}"  # the model's own many-step sampler; reference_steps = 0: none
    jobs = [(m, k) for m in cfg.methods for k in cfg.num_steps]
    if cfg.reference_steps > 0:
        jobs.append((ceiling, cfg.reference_steps))
    for _, k in jobs:
        schedules.timesteps(schedule, "linear", k)  # K out of range fails before any sampling
    # One jitted sampler per module: strides and orders of the same module and K share one compilation.
    # The model's parameters are an argument, not a constant folded into the program.
    sample_fns = {module: jax.jit(lambda p, b, key_, module=module: _sample(module, target, p, b, key_, cfg))
                  for module, _ in BASELINE_METHODS.values()}
    rows = []
    cache = ceiling_cache_path(cfg, target)
    for method, k in tqdm(jobs, desc="sampling", unit="row"):
        if method == ceiling and cache and os.path.exists(cache):
            with np.load(cache) as f:
                samples, wall, device_used = f["images"].astype(np.float32), float(f["wall_time_s"]), str(f["device"])
            rows.append(score_row(target, cfg, method, k, samples, wall, workdir, device=device_used,
                                  cached=os.path.abspath(cache)))
            continue
        module, kwargs, stride = parse_method("ddpm-linear" if method == ceiling else method)
        if module is ddpm and target.learned_variance:
            kwargs = {**kwargs, "variance": "learned_range"}  # the model's own ancestral sampler
        params = (module.init(schedule, schedules.timesteps(schedule, stride, k), **kwargs), target.params)
        samples, wall = timed_samples(sample_fns[module], params, noise_bank, key_sampler, cfg.batch_size)
        if method == ceiling and cache:  # scored as stored, so a cached rerun gives the same row
            samples = samples.astype(np.float16).astype(np.float32)
            save_ceiling(cache, samples, wall)
        rows.append(score_row(target, cfg, method, k, samples, wall, workdir))
    return rows


@parallel.main_only
def save_ceiling(cache: str, samples: np.ndarray, wall: float) -> None:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez_compressed(cache, images=samples.astype(np.float16), wall_time_s=wall, device=jax.devices()[0].device_kind)


def _sample(module, target: targets.Target, p, batch, key, cfg):
    """One baseline sampler on one batch: the ancestral sampler with the model's learned variance and
    guidance's condition_mean route where the target has them, every other sampler on (guided) ε."""
    x, eps, (own, cond) = model_fns(target, p[1], batch)
    if module is ddpm:
        return ddpm.sample(p[0], own, x, key, clip_denoised=cfg.clip_denoised, return_info=True, cond_fn=cond)
    return module.sample(p[0], eps, x, key, clip_denoised=cfg.clip_denoised, return_info=True)


def ceiling_cache_path(cfg, target: targets.Target) -> str | None:
    """Where the ceiling's samples are cached: one file per (model, steps, noise bank, clipping).

    The shipped default model's file lives in the package (`ddss/models/assets/ceilings/`); others
    go to `cfg.ceiling_cache` (None turns caching off). Samples are stored as float16 (5e-4 rounding).
    """
    if not cfg.ceiling_cache or not target.identity:
        return None
    # Stable identities only (the weight file's bytes, the schedule's specification): an array computed
    # at run time can differ in its last bits between machines and library versions.
    digest = hashlib.sha256(f"{target.identity}:{tuple(target.image_shape)}".encode())
    name = (f"{target.name.split(':')[0]}-{digest.hexdigest()[:16]}-ddpm{cfg.reference_steps}-n{cfg.num_samples}"
            f"-seed{cfg.eval_seed}-clip{int(cfg.clip_denoised)}"
            + (f"-labels_{cfg.class_labels}" if target.num_classes else "") + ".npz")
    shipped = os.path.join(SHIPPED_CEILINGS, name)
    return shipped if os.path.exists(shipped) else os.path.join(os.path.expanduser(cfg.ceiling_cache), name)


def compare_with_training_free(rows: list[dict]) -> None:
    """Adds to each learned or searched row the best training-free row at its K and the FID ratio."""
    best = {}
    for r in rows:
        if is_training_free(r["method"]) and r.get("fid") is not None:
            if r["K"] not in best or r["fid"] < best[r["K"]]["fid"]:
                best[r["K"]] = r
    for r in rows:
        if is_training_free(r["method"]) or r["method"] == "data" or r.get("fid") is None or r["K"] not in best:
            continue
        if r["method"].startswith("ddpm-") and r["method"][5:].isdigit():
            continue  # the ceiling
        b = best[r["K"]]
        r["best_training_free"] = {k: b.get(k) for k in ("method", "fid", "precision", "recall")}
        r["fid_over_best_training_free"] = r["fid"] / b["fid"]


def finish(cfg, target: targets.Target, rows: list[dict], workdir: str, **extra) -> dict:
    """Adds the data floor and the comparison with the best training-free rows, writes results.json
    and the score-vs-K plot, prints the table."""
    if target.floor is not None:
        images = np.asarray(target.floor[0])
        rows.append(row("data", 0, 0, target.score(images, floor=True), len(images), 0.0, cfg))
        save_samples(workdir, "data", 0, images)
    compare_with_training_free(rows)
    results = {"model": target.name, "schedule": cfg.schedule if cfg.model == "gmm" else "checkpoint",
               **target.describe(),
               "eval_noise": {"eval_seed": cfg.eval_seed, "seed_range": [0, SEED_SPAN], "num_samples": cfg.num_samples},
               "training_seeds": {"seed": cfg.seed, "seed_range": [SEED_SPAN, 2 * SEED_SPAN]},
               **conditioning_record(cfg, target), **extra, "rows": rows}
    writers.write_json(os.path.join(workdir, "results.json"), results)
    if target.train is not None:
        space = target.eval_space.name
        ylabel = "Fréchet distance to the exact mixture" if cfg.model == "gmm" else f"FID ({space})"
        plots.score_vs_k(rows, os.path.join(workdir, "fid_vs_k.png"), ylabel=ylabel)
    print(format_table(rows, target))
    return results


def model_record(target: targets.Target) -> dict | None:
    """What an export records of the model (identity, classes, guidance); None for a target without an identity."""
    if not target.identity:
        return None
    return export.model_record(target.identity, num_classes=target.num_classes, guidance=target.guidance)


def conditioning_record(cfg, target: targets.Target) -> dict:
    """results.json's record of class-conditional sampling: the classes, how the held-out bank's labels
    were drawn (FID moves with it), the guidance. Empty for an unconditional target."""
    if not target.num_classes:
        return {}
    return {"conditioning": {"num_classes": target.num_classes, "labels": cfg.class_labels,
                             "guidance": target.guidance}}


@parallel.main_only
def save_samples(workdir: str, method: str, k: int, samples: np.ndarray) -> None:
    name = f"{method}_K{k}"
    np.savez_compressed(os.path.join(workdir, "samples", f"{name}.npz"), images=samples.astype(np.float32))
    plots.samples_picture(samples, os.path.join(workdir, "grids", f"{name}.png"))


def format_table(rows, target: targets.Target | None = None) -> str:
    """A markdown table of the rows: evaluation-space FID, precision, recall, the train-space FID, KID,
    IS when rows have it, and each learned or searched row's FID over the best training-free row's."""
    num = lambda v, f: "" if v is None else format(v, f)
    columns = [("fid", "FID", ".4g"), ("precision", "P", ".3f"), ("recall", "R", ".3f"),
               ("fid_train_space", "FID (train space)", ".4g"), ("kid", "KID", ".3g")]
    if any(r.get("is") is not None for r in rows):
        columns.append(("is", "IS", ".3g"))
    if any(r.get("fid_over_best_training_free") is not None for r in rows):
        columns.append(("fid_over_best_training_free", "÷ best training-free", ".3f"))
    lines = []
    if target is not None and target.train is not None:
        e, t = target.eval_space.identity, target.train.identity
        lines.append(f"Evaluation space: {e['name']}; train space (loss, validation, fitness): {t['name']}.")
        if target.spaces_coincide:
            lines.append("NOTE: the evaluation space is the train space: these scores are not independent of the "
                         "objectives." if target.name != "gmm" else
                         "The mixture has no feature network: both spaces are the data, against the exact moments.")
        lines.append("")  # a blank line, so Markdown renders the table as a table
    lines += ["| method | K | " + " | ".join(c for _, c, _ in columns) + " |", "|---|---|" + "---|" * len(columns)]
    lines += [f"| {r['method']} | {r['K']} | " + " | ".join(num(r.get(c), f) for c, _, f in columns) + " |"
              for r in rows]
    return "\n".join(lines)
