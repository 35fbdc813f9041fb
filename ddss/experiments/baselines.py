"""Score the training-free baseline samplers of a model at several K on held-out noise.

  ddss --config=digits_baselines --workdir=DIR

Every (method, K) of the config, the model's own many-step sampler (the ceiling, `ddpm-<steps>`)
and the data floor (`data`), scored by the shared evaluation protocol of
`ddss.experiments.evaluation` (held-out noise, uint8 quantisation, evaluation and train feature
spaces, precision and recall), which also documents the files written.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from ddss.experiments import evaluation, targets


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
    features: dict | None = None  # the train space's extractor config (ddss.metrics.features.from_config)
    reference_stats: str = ""  # stats.npz of the data in that feature space
    eval_features: dict | None = None  # the evaluation space's extractor config; None: the train space (flagged)
    eval_reference_stats: str = ""  # stats.npz of the data in the evaluation space
    eval_seed: int = 0  # the held-out noise bank's seed, in [0, 2**20); training seeds are disjoint from it
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
        for field in ("features", "eval_features"):
            if c.get(field) is not None:
                c[field] = ml_collections.ConfigDict(c[field])
        cfg = cls(**c)
        for method in cfg.methods:
            evaluation.parse_method(method)
        evaluation.check_seeds(cfg.seed, cfg.eval_seed)
        if cfg.num_samples < 2 or cfg.batch_size < 1:
            raise ValueError("num_samples must be ≥ 2 and batch_size ≥ 1.")
        return cfg


def run(config, workdir: str) -> dict:
    cfg = BaselinesConfig.from_config(config)
    target, noise_bank, key_sampler = evaluation.setup(cfg, workdir)
    rows = evaluation.baseline_rows(cfg, target, noise_bank, key_sampler, workdir)
    return evaluation.finish(cfg, target, rows, workdir)


