"""Score the training-free baseline samplers of a model at several K on held-out noise.

  ddss --config=digits_baselines --workdir=DIR

Every (method, K) of the config, the model's own many-step sampler (the ceiling, `ddpm-<steps>`)
and the data floor (`data`), scored by the shared evaluation protocol of
`ddss.experiments.evaluation` (held-out noise, uint8 quantisation, evaluation and train feature
spaces, precision and recall), which also documents the files written.
"""
from __future__ import annotations

import dataclasses
import math

import ml_collections

from ddss import fields
from ddss.experiments import evaluation, targets, writers
from ddss.samplers import conditioning


@dataclasses.dataclass(frozen=True)
class GMMConfig:
    seed: int
    event_shape: tuple[int, ...]
    num_components: int

    def __post_init__(self):
        fields.check("gmm", self, seed=fields.INT_NONNEG, num_components=fields.INT_POS)
        if not self.event_shape:
            raise ValueError("config.gmm.event_shape must name at least one dimension, e.g. (2,), got ().")
        fields.check_each("gmm", "event_shape", self.event_shape, fields.INT_POS)


@dataclasses.dataclass(frozen=True)
class BaselinesConfig:
    seed: int
    model: str
    checkpoint: str | None
    schedule: str
    num_timesteps: int
    gmm: GMMConfig | None
    num_steps: tuple[int, ...]
    methods: tuple[str, ...]
    reference_steps: int
    num_samples: int
    batch_size: int
    clip_denoised: bool
    features: dict | None = None  # the train space's extractor config (ddss.metrics.features.from_config)
    reference_stats: str | None = None  # stats.npz of the data in that feature space
    eval_features: dict | None = None  # the evaluation space's extractor config; None: the train space (flagged)
    eval_reference_stats: str | None = None  # stats.npz of the data in the evaluation space
    eval_seed: int = 0  # the held-out noise bank's seed, in [0, 2**20); training seeds are disjoint from it
    ceiling_cache: str | None = "~/.cache/ddss/ceilings"  # None: recompute the many-step ceiling every run
    # model = "adm": {"flags": create_model_and_diffusion flags, "classifier": path or None,
    # "classifier_flags": create_classifier flags, "classifier_scale": s (0: unguided)}
    adm: dict | None = None
    class_labels: str = "uniform"  # a class-conditional bank's labels: "uniform" (balanced) or "random" (i.i.d.)

    @classmethod
    def known(cls, *extra: str) -> list[str]:
        """The top-level fields an experiment built on these reads: these, `experiment`, and `extra`."""
        return [f.name for f in dataclasses.fields(cls)] + ["experiment", *extra]

    @classmethod
    def from_config(cls, config) -> "BaselinesConfig":
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        c.pop("experiment", None)
        c.setdefault("model", "gmm")
        c.setdefault("checkpoint", None)
        fields.unset_empty(c, "checkpoint", "reference_stats", "eval_reference_stats", "ceiling_cache")
        if c["model"] not in targets.MODELS:
            raise ValueError(f"Unknown model {c['model']!r}; choose one of {targets.MODELS}.")
        c.setdefault("schedule", "linear")  # the mixture's schedule; pretrained models bring their own
        c.setdefault("num_timesteps", 1000)
        if c["model"] == "gmm" and "gmm" not in c:
            raise ValueError("config.model='gmm' needs a config.gmm block (seed, event_shape, num_components).")
        gmm_cfg = c.get("gmm")
        if gmm_cfg:
            fields.check_known("gmm", gmm_cfg, [f.name for f in dataclasses.fields(GMMConfig)])
        c["gmm"] = GMMConfig(**{**gmm_cfg, "event_shape": tuple(gmm_cfg["event_shape"])}) if gmm_cfg else None
        c["num_steps"] = tuple(c["num_steps"])
        fields.check_each("", "num_steps", c["num_steps"], fields.INT_POS, unique=True)
        c["methods"] = tuple(c["methods"])
        fields.check_each("", "methods", c["methods"], fields.STR, unique=True)
        for field in ("features", "eval_features"):
            if c.get(field) is not None:
                c[field] = ml_collections.ConfigDict(c[field])
        if c["model"] == "adm":
            c["adm"] = check_adm(c.get("adm"))
        elif c.get("adm") is not None:
            c["adm"] = None  # only an ADM checkpoint reads it
        cfg = fields.construct(cls, "", c)
        for method in cfg.methods:
            evaluation.parse_method(method)
        fields.check("", cfg, seed=fields.INT_NONNEG, eval_seed=fields.INT_NONNEG, num_timesteps=fields.Rule(int, 2),
                     reference_steps=fields.INT_NONNEG, num_samples=fields.Rule(int, 2), batch_size=fields.INT_POS,
                     clip_denoised=fields.BOOL, checkpoint=fields.OPT_STR, schedule=fields.STR,
                     reference_stats=fields.OPT_STR, eval_reference_stats=fields.OPT_STR,
                     ceiling_cache=fields.OPT_STR)
        evaluation.check_seeds(cfg.seed, cfg.eval_seed)
        if cfg.class_labels not in conditioning.DRAWS:
            raise ValueError(f"config.class_labels = {cfg.class_labels!r}: choose one of {conditioning.DRAWS}.")
        if cfg.model == "gmm":
            evaluation.make_schedule(cfg.schedule, cfg.num_timesteps)  # an unknown schedule name fails here
            too_many = [k for k in cfg.num_steps + (cfg.reference_steps,) if k > cfg.num_timesteps]
            if too_many:
                raise ValueError(f"K = {too_many[0]} exceeds the mixture's T = {cfg.num_timesteps} diffusion steps: "
                                 f"use K ≤ {cfg.num_timesteps} (config.num_steps, config.reference_steps).")
        return cfg


ADM_FIELDS = ("flags", "classifier", "classifier_flags", "classifier_scale")


def check_adm(adm) -> dict:
    """config.adm, checked: its known fields, a finite classifier_scale ≥ 0, flags as mappings."""
    adm = dict(adm or {})
    fields.check_known("adm", adm, ADM_FIELDS)
    adm = {"flags": dict(adm.get("flags") or {}), "classifier": adm.get("classifier") or None,
           "classifier_flags": dict(adm.get("classifier_flags") or {}),
           "classifier_scale": adm.get("classifier_scale", 0.0)}
    scale = adm["classifier_scale"]
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"config.adm.classifier_scale must be a finite number ≥ 0 (0: no guidance), got {scale!r}.")
    adm["classifier_scale"] = float(scale)
    return adm


def run(config, workdir: str) -> dict:
    cfg = BaselinesConfig.from_config(config)
    writers.claim_workdir(workdir, config)
    target, noise_bank, key_sampler = evaluation.setup(cfg, workdir)
    rows = evaluation.baseline_rows(cfg, target, noise_bank, key_sampler, workdir)
    return evaluation.finish(cfg, target, rows, workdir)


