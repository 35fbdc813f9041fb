"""Evolution, then gradient: searched timesteps as the starting point of a learned GGDM sampler.

  ddss --config=digits_search_then_learn --workdir=DIR

For each K of `config.num_steps`:
  1. `evolution-timesteps`: the evolutionary search of K timesteps (full network) with the
     `config.evolution` settings (DIR/runs/evolution-timesteps_B<K>/); with `config.ddss.init.skips`,
     `evolution-joint` instead: K timesteps and each step's skipped blocks (`joint.free_steps=False`,
     so the searched K is the K that DDSS learns);
  2. `<family>-<loss>`: DDSS from the `config.ddss.init` solver, the usual start, full network
     (DIR/runs/<method>_K<K>/);
  3. `<family>-<loss>@searched`: the same DDSS, started from the searched timesteps with the searched
     sampler's own coefficients (a GGDM on the DDIM or DPM-Solver++ base the search used, so the start
     reproduces the searched sampler exactly), under DIR/runs/<method>@searched_K<K>/. With
     `init.skips` it keeps the searched skip sets while it learns (families without +time: a skip set
     belongs to its step's integer time) and exports a searched-format file that skips them statically.
All three sit beside the training-free baselines in one results.json, scored by the shared evaluation
protocol (`ddss.experiments.evaluation`).
"""
from __future__ import annotations

import dataclasses
import os

import ml_collections

from ddss import fields
from ddss.experiments import baselines, evaluation, evolution, learn, plots, writers

SECTIONS = ("evolution", "ddss")
SEARCH_BASES = {"ddim": "ddim", "dpm_solver++": "dpm_solver++"}


def compose(learn_config, search_config) -> ml_collections.ConfigDict:
    """A config of this experiment from a DDSS config and an evolution config of the same model: the
    model and scoring fields of `learn_config`, its DDSS sections under `ddss`, the search's under
    `evolution` (its `searches` are replaced by a timestep search per K)."""
    config = ml_collections.ConfigDict({k: v for k, v in learn_config.items() if k not in learn.DDSS_KEYS})
    config.experiment = "search_then_learn"
    config.evolution = {k: search_config[k] for k in evolution.EVOLUTION_KEYS if k in search_config}
    config.ddss = {k: learn_config[k] for k in learn.DDSS_KEYS if k in learn_config}
    return config


def configs(config) -> tuple[evolution.EvolutionConfig, learn.DDSSConfig]:
    c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    for section in SECTIONS:
        if section not in c:
            raise ValueError(f"config.{section} is missing: this experiment takes the search's settings in "
                             "config.evolution and DDSS's in config.ddss (see the digits_search_then_learn config).")
    fields.check_known("", c, baselines.BaselinesConfig.known(*SECTIONS))
    base = {k: v for k, v in c.items() if k not in SECTIONS}
    ddss_cfg = learn.DDSSConfig.from_config(ml_collections.ConfigDict({**base, **c["ddss"]}))
    kind = search_kind(ddss_cfg)
    searches = tuple((kind, int(k)) for k in base["num_steps"])
    evo = evolution.EvolutionConfig.from_config(ml_collections.ConfigDict(
        {**base, **c["evolution"], "searches": searches}))
    if evo.sampler not in SEARCH_BASES:
        raise ValueError(f"config.evolution.sampler must be one of {sorted(SEARCH_BASES)} here (a GGDM learns its "
                         f"coefficients from that solver's), got {evo.sampler!r}.")
    if kind == "joint" and evo.joint.free_steps:
        raise ValueError("config.ddss.init.skips learns a GGDM of the searched K with the searched skip sets, so the "
                         "joint search must keep K: set config.evolution.joint.free_steps=False.")
    return evo, ddss_cfg


def search_kind(ddss_cfg: learn.DDSSConfig) -> str:
    """"joint" (timesteps and skip sets) when DDSS keeps the searched skip sets, else "timesteps"."""
    return "joint" if ddss_cfg.init.skips else "timesteps"


def run(config, workdir: str) -> dict:
    evo_cfg, ddss_cfg = configs(config)
    writers.claim_workdir(workdir, config)
    target, noise_bank, key_sampler = evaluation.setup(ddss_cfg.base, workdir)
    rows, costs = evolution.searched_rows(evo_cfg, target, noise_bank, key_sampler, workdir)
    usual = dataclasses.replace(ddss_cfg, init=dataclasses.replace(ddss_cfg.init, skips=False))  # full network
    rows += learn.learned_rows(usual, target, noise_bank, key_sampler, workdir)
    kind = search_kind(ddss_cfg)
    searched = tuple((k, os.path.join(workdir, "runs", f"evolution-{kind}_B{k}", "sampler.safetensors"))
                     for k in ddss_cfg.base.num_steps)
    from_search = dataclasses.replace(ddss_cfg, init=dataclasses.replace(
        ddss_cfg.init, base=SEARCH_BASES[evo_cfg.sampler], timesteps_from=searched))
    rows += learn.learned_rows(from_search, target, noise_bank, key_sampler, workdir, tag="@searched")
    rows += evaluation.baseline_rows(ddss_cfg.base, target, noise_bank, key_sampler, workdir)
    results = evaluation.finish(ddss_cfg.base, target, rows, workdir, sampler=evo_cfg.sampler,
                                fitness_samples=evo_cfg.fitness_samples)
    plots.search_progress(costs, os.path.join(workdir, "search_progress.png"))
    plots.timesteps(rows, target.schedule, ddss_cfg.base.methods, os.path.join(workdir, "timesteps.png"))
    return results
