"""Score exported samplers (learned or searched, pruned or not) beside the training-free baselines.

  ddss --config=digits_evaluate --workdir=DIR \
      --config.samplers='("RUN/runs/ggdm+pred+time-teacher_K5/sampler.safetensors",)'

Each entry of `config.samplers` is an exported file (`ddss.save_sampler` / `ddss.save_evolved_sampler`)
or a finished run's directory, which stands for all of its exports (DIR/runs/*/sampler.safetensors):

  ddss --config=digits_evaluate --workdir=DIR --config.samplers='("~/ddss/digits_ddss","~/ddss/digits_evolution")'

Each sampler is scored
at its own K on the held-out noise bank, by the shared evaluation protocol
(`ddss.experiments.evaluation`), beside every method of `config.methods` at the same K values (or
`config.num_steps` when given), the ceiling and the data floor. A row's method is the run directory's
name without its _K<K> / _B<S> suffix (or the file name), plus `config.labels` when given.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import re

import jax
import ml_collections
import numpy as np

from ddss import export, fields
from ddss.experiments import baselines, evaluation, evolution, plots, writers
from ddss.samplers import ggdm

_KEYS = ("samplers", "labels")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    base: baselines.BaselinesConfig
    samplers: tuple[str, ...]
    labels: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config) -> "EvaluateConfig":
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        samplers = exports(os.path.expanduser(os.path.expandvars(p)) for p in c.get("samplers", ()))
        labels = tuple(c.get("labels", ()))
        if not samplers:
            raise ValueError("config.samplers is empty: name one or more exported sampler files "
                             "(DIR/runs/<method>_K<K>/sampler.safetensors) or finished run directories.")
        for path in samplers:  # a damaged or foreign file stops the run here, before any work
            export.load_sampler(path)
        if labels and len(labels) != len(samplers):
            raise ValueError(f"config.labels has {len(labels)} names for {len(samplers)} samplers.")
        fields.check_known("", c, baselines.BaselinesConfig.known(*_KEYS))
        base = {k: v for k, v in c.items() if k not in _KEYS}
        if not base.get("num_steps"):
            base["num_steps"] = ()
        return cls(base=baselines.BaselinesConfig.from_config(ml_collections.ConfigDict(base)), samplers=samplers,
                   labels=labels)


def exports(paths) -> tuple[str, ...]:
    """Sampler files from files and run directories (a directory: its runs/*/sampler.safetensors)."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(glob.glob(os.path.join(path, "runs", "*", "sampler.safetensors")))
            if not found:
                raise FileNotFoundError(f"config.samplers names the directory {path}, which holds no exported "
                                        "sampler (runs/*/sampler.safetensors): is the run finished?")
            out += found
        elif os.path.isfile(path):
            out.append(path)
        else:
            raise FileNotFoundError(f"config.samplers names {path}, which does not exist.")
    return tuple(out)


def method_of(path: str) -> str:
    """The run directory's name without its _K<K> or _B<S> suffix, else the file's name."""
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if re.search(r"_[KB]\d+$", parent):
        return re.sub(r"_[KB]\d+$", "", parent)
    return os.path.splitext(os.path.basename(path))[0]


def run(config, workdir: str) -> dict:
    cfg = EvaluateConfig.from_config(config)
    writers.claim_workdir(workdir, config)
    target, noise_bank, key_sampler = evaluation.setup(cfg.base, workdir)
    rows = []
    for i, path in enumerate(cfg.samplers):
        sampler = export.load_sampler(path, num_blocks=target.num_blocks, model_sha256=target.identity or None,
                                      guidance_scale=(target.guidance or {}).get("scale", 0.0))
        method = cfg.labels[i] if cfg.labels else method_of(path)
        if isinstance(sampler, export.EvolvedSampler):
            samples, wall = evolution.score_sampler(sampler, target, noise_bank, key_sampler, cfg.base.batch_size)
            extra = {"timesteps": np.asarray(sampler.timesteps).tolist(), "skip": [list(s) for s in sampler.skip],
                     "block_executions": sampler.block_executions, "sampler": sampler.kind}
        else:
            def learned(p, batch, key, sampler=sampler):
                x, eps, _ = evaluation.model_fns(target, p[1], batch)
                return ggdm.sample(p[0], eps, x, key, clip_denoised=sampler.clip_denoised, return_info=True)

            fn = jax.jit(learned)
            samples, wall = evaluation.timed_samples(fn, (sampler.params, target.params), noise_bank, key_sampler,
                                                     cfg.base.batch_size)
            extra = {"timesteps": np.asarray(sampler.params.timesteps).tolist(), "family": sampler.family}
        rows.append(evaluation.score_row(target, cfg.base, method, sampler.num_steps, samples, wall, workdir,
                                         export=os.path.abspath(path), **extra))
    ks = cfg.base.num_steps or tuple(sorted({r["K"] for r in rows}))
    base = dataclasses.replace(cfg.base, num_steps=ks)
    rows += evaluation.baseline_rows(base, target, noise_bank, key_sampler, workdir)
    results = evaluation.finish(base, target, rows, workdir)
    plots.timesteps(rows, target.schedule, base.methods, os.path.join(workdir, "timesteps.png"))
    return results
