"""The embedded default model: a small DDPM UNet trained on scikit-learn's 8×8 handwritten digits.

  model = ddss.models.digits.load()      # DiffusionModel: eps_fn, schedule, blocks (L, MACs)
  feats = ddss.models.digits.feature_fn() # images -> 64-d features of the digits classifier
  mu, sigma = ddss.models.digits.reference_stats("all")  # FID reference in that feature space
  evals = ddss.models.digits.eval_feature_fn()  # images -> 64-d features of the evaluation network
  sampler = ddss.models.digits.load_learned_sampler()  # a K = 5 sampler DDSS learned for this model

The digits classifier is the feature network the learned samplers' loss uses; the evaluation
network (`ddss.models.eval_net`: another architecture, seed and split) is used by no loss, so
metrics in its feature space are an independent evaluation.
The weight files ship inside the package (`ddss/models/assets/`), so nothing is downloaded.
They are reproduced by
  ddss --config=digits_train --workdir=DIR          (the UNet)
  ddss --config=digits_classifier --workdir=DIR     (the feature network)
  ddss --config=digits_eval_features --workdir=DIR  (the evaluation network)
  ddss --config=ref_stats_digits --workdir=DIR      (the reference statistics)
  ddss --config=digits_ddss --workdir=DIR           (the learned sampler: DIR/runs/*_K5/sampler.safetensors)
Images are native 8×8×1 in [-1, 1]; time is DDPM's t ∈ [0, 999] on the linear-β schedule.
"""
from __future__ import annotations

import os

from ddss.models import classifier, eval_net, params_io, pretrained

ASSETS = os.path.join(os.path.dirname(__file__), "assets")
UNET_FILE = os.path.join(ASSETS, "digits_unet.safetensors")
CLASSIFIER_FILE = os.path.join(ASSETS, "digits_classifier.safetensors")
EVAL_FILE = os.path.join(ASSETS, "digits_eval_features.safetensors")
LEARNED_SAMPLER_FILE = os.path.join(ASSETS, "digits_sampler_k5.safetensors")
STATS_SPLITS = ("all", "train")
_HINT = ("The file ships with ddss; reinstall the package, or rebuild it with "
         "`ddss --config={config} --workdir=DIR` and pass the path.")


def load(path: str | None = None) -> pretrained.DiffusionModel:
    """The digits DDPM (EMA weights). `path` overrides the shipped file (e.g. a fresh training run's)."""
    return pretrained.load(path or UNET_FILE, hint=_HINT.format(config="digits_train"))


def load_learned_sampler(path: str | None = None):
    """The K = 5 GGDM+PRED+TIME sampler that DDSS learned for this model (`ddss --config=digits_ddss`:
    pixel teacher, started from DPM-Solver++(2M) on the time-quadratic grid), as `ddss.load_sampler`
    returns it: `sampler.sample(model.eps_fn, x_K, key)`. `path` overrides the shipped file."""
    from ddss import export

    return export.load_sampler(path or LEARNED_SAMPLER_FILE, num_steps=None if path else 5)


def load_classifier(path: str | None = None) -> tuple[classifier.ClassifierConfig, dict]:
    """(config, params) of the digits feature network."""
    path = path or CLASSIFIER_FILE
    params, meta = params_io.load(path, what="digits classifier file", hint=_HINT.format(config="digits_classifier"))
    if meta.get("kind") != "digits_classifier":
        raise params_io.WeightFileError(f"{path} is not a digits classifier weight file.")
    config = classifier.ClassifierConfig.from_dict(meta["config"])
    params_io.check_against(params, _classifier_shapes(config), source=path)
    params_io.check_finite(params, source=path)
    return config, params


def feature_fn(path: str | None = None):
    """images [B, 8, 8, 1] in [-1, 1] -> [B, 64] penultimate classifier activations (jittable)."""
    config, params = load_classifier(path)
    return classifier.features_fn(config, params)


def _classifier_shapes(config):
    import jax

    return jax.eval_shape(lambda: classifier.init_params(config, jax.random.key(0)))


def load_eval_network_with_metadata(path: str | None = None) -> tuple[eval_net.EvalNetConfig, dict, dict]:
    """(config, params, metadata) of the digits evaluation network; the metadata holds its training
    config (seed, split rule, held-out indices) and results (accuracies)."""
    path = path or EVAL_FILE
    params, meta = params_io.load(path, what="digits evaluation network file",
                                  hint=_HINT.format(config="digits_eval_features"))
    if meta.get("kind") != "digits_eval_features":
        raise params_io.WeightFileError(f"{path} is not a digits evaluation network weight file "
                                        f"(kind {meta.get('kind')!r}, not 'digits_eval_features').")
    config = eval_net.EvalNetConfig.from_dict(meta["config"])
    import jax

    params_io.check_against(params, jax.eval_shape(lambda: eval_net.init_params(config, jax.random.key(0))),
                            source=path)
    params_io.check_finite(params, source=path)
    return config, params, meta


def load_eval_network(path: str | None = None) -> tuple[eval_net.EvalNetConfig, dict]:
    """(config, params) of the digits evaluation network (`ddss.models.eval_net`), used by no loss."""
    config, params, _ = load_eval_network_with_metadata(path)
    return config, params


def eval_feature_fn(path: str | None = None):
    """images [B, 8, 8, 1] in [-1, 1] -> [B, 64] evaluation-network features (jittable)."""
    config, params = load_eval_network(path)
    return eval_net.features_fn(config, params)


def reference_stats(split: str = "all"):
    """(mu, sigma) of the digits classifier's features over the `all` (1797) or `train` (1437) digits."""
    from ddss.metrics import stats

    if split not in STATS_SPLITS:
        raise ValueError(f"Shipped digits statistics exist for {STATS_SPLITS}, not {split!r}; compute others with "
                         "`ddss --config=ref_stats_digits --config.split=SPLIT --workdir=DIR`.")
    mu, sigma, _ = stats.load(os.path.join(ASSETS, f"digits_stats_{split}.npz"),
                              hint=_HINT.format(config="ref_stats_digits"))
    return mu, sigma
