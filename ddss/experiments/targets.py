"""What an evaluating experiment samples from and how it scores the samples.

A `Target` bundles a model (ε function with its parameters passed explicitly, the schedule, the
image shape) with a feature space and reference statistics. Config `model` picks one:

  "gmm"        the analytic Gaussian mixture (exact ε); scored in data space against its exact moments
  "digits"     the embedded digits DDPM; scored in the digits classifier's feature space against all
               1797 digits, with the train-vs-test-split floor
  "diffusers"  a diffusers UNet2DModel checkpoint directory (`config.checkpoint`), converted on load;
               scored with `config.features` (e.g. the FID Inception) against `config.reference_stats`
               (a stats.npz from configs/ref_stats_*.py). KID needs reference features, which a
               statistics file does not hold: those rows carry kid = null. Without `config.features`
               the rows are unscored (fid = null) and only the samples are saved.

Rows also get the Inception Score of the extractor's classifier (`is`, `is_std`; 10 splits) when it
has one: the FID Inception's 1008 classes, or the digits classifier's 10.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from ddss import schedules
from ddss.data import digits as digits_data
from ddss.metrics import features as features_lib
from ddss.metrics import fid, inception_score, kid, stats
from ddss.models import convert, gmm, unet
from ddss.models import digits as digits_model

MODELS = ("gmm", "digits", "diffusers")
_CIFAR10_HINT = ("Set --config.checkpoint=DIR to a diffusers UNet2DModel checkpoint directory (config.json + "
                 "diffusion_pytorch_model.safetensors), e.g. `huggingface-cli download google/ddpm-cifar10-32 "
                 "--local-dir DIR`.")


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    apply: Callable  # (model_params, x, t) -> ε̂
    params: Any
    schedule: schedules.Schedule
    image_shape: tuple[int, ...]
    feature_space: str | None
    features: Callable[[np.ndarray], np.ndarray] | None  # images -> float64 features
    reference_stats: tuple[np.ndarray, np.ndarray] | None
    reference_features: np.ndarray | None
    floor: tuple | None  # (images, their features, reference (mu, sigma), reference features): the data row
    logits: Callable[[np.ndarray], np.ndarray] | None = None  # images -> classifier logits, for IS
    # (model_params, x, t, skip_mask [L] traced or None, skip static tuple) -> ε̂, and L: for pruning searches
    apply_skip: Callable | None = None
    num_blocks: int = 0

    def score(self, samples: np.ndarray) -> dict:
        if self.features is None:
            return {"fid": None, "kid": None, "kid_std": None, "feature_space": None}
        scores = score_features(self.features(samples), self.reference_stats, self.reference_features,
                                self.feature_space)
        if self.logits is not None and len(samples) >= 10:
            scores["is"], scores["is_std"] = inception_score.inception_score(self.logits(samples))
        return scores

    def score_floor(self) -> dict | None:
        if self.floor is None:
            return None
        _, feats, ref_stats, ref_feats = self.floor
        return score_features(feats, ref_stats, ref_feats, self.feature_space)


def score_features(feats, ref_stats, ref_feats, space, *, num_subsets: int = 20) -> dict:
    """FID (float64) against `ref_stats`, and KID (subset mean, std) against `ref_feats` when given."""
    m = s = None
    if ref_feats is not None:
        m, s = kid.kid(feats, ref_feats, num_subsets=num_subsets, subset_size=min(1000, len(feats), len(ref_feats)))
    return {"fid": fid.frechet_distance_of(feats, *ref_stats), "kid": m, "kid_std": s, "feature_space": space}


def feature_network(model: str, features_cfg=None) -> tuple[Callable, Any]:
    """(apply(params, images) -> features, params): the target's feature space as a jittable function
    (what DDSS differentiates through and the search's fitness scores in)."""
    if model == "gmm":
        return (lambda p, x: x.reshape(x.shape[0], -1)), {}
    extractor = features_lib.get("digits") if model == "digits" else features_lib.from_config(features_cfg)
    return extractor.apply, extractor.params


def gmm_target(gmm_cfg, schedule: schedules.Schedule, num_samples: int, key) -> Target:
    mixture = gmm.random_mixture(gmm_cfg.seed, event_shape=tuple(gmm_cfg.event_shape),
                                 num_components=gmm_cfg.num_components)
    eps = gmm.eps_fn(mixture, schedule)
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
    truth = (np.asarray(gmm.mean(mixture)), np.asarray(gmm.covariance(mixture)))
    reference = flat(gmm.sample(mixture, key, num_samples))
    floor = np.asarray(gmm.sample(mixture, jax.random.fold_in(key, 1), num_samples))
    return Target("gmm", lambda p, x, t: eps(x, t), {}, schedule, mixture.event_shape, "data", flat, truth,
                  reference, (floor, flat(floor), truth, reference),
                  apply_skip=lambda p, x, t, mask, skip: eps(x, t), num_blocks=0)


def _unet_apply_skip(config: unet.UNetConfig):
    return lambda p, x, t, mask, skip: unet.eps_fn(config, p, skip_mask=mask, skip=skip)(x, t)


def on_images(fn):
    """`fn` on samples clipped to the data range [-1, 1], as when they are saved as images.

    Unclipped samplers overshoot the range slightly; a NaN still reaches the extractor's check.
    """
    return lambda samples: fn(np.clip(samples, -1.0, 1.0))


def digits_target(checkpoint: str = "") -> Target:
    """The shipped digits DDPM, scored in the digits classifier's space against the shipped statistics."""
    model = digits_model.load(checkpoint or None)
    extractor = features_lib.get("digits")
    ref = extractor.features(digits_data.load("all")[0])
    test_images = digits_data.load("test")[0]
    train = extractor.features(digits_data.load("train")[0])
    return Target("digits", lambda p, x, t: unet.eps_fn(model.config, p)(x, t), model.params, model.schedule,
                  model.image_shape, "digits_classifier", on_images(extractor.features),
                  digits_model.reference_stats("all"), ref,
                  (test_images, extractor.features(test_images), digits_model.reference_stats("train"), train),
                  on_images(extractor.logits_numpy), _unet_apply_skip(model.config), model.num_blocks)


def diffusers_target(checkpoint: str, features_cfg=None, reference_stats: str = "") -> Target:
    if not checkpoint:
        raise ValueError(f"config.checkpoint is empty. {_CIFAR10_HINT}")
    model = convert.load_diffusers(checkpoint)
    apply = lambda p, x, t: unet.eps_fn(model.config, p)(x, t)
    if features_cfg is None or not features_cfg.get("name"):
        return Target(f"diffusers:{checkpoint}", apply, model.params, model.schedule, model.image_shape,
                      None, None, None, None, None, None, _unet_apply_skip(model.config), model.num_blocks)
    hint = ("Compute it once with `python -m ddss.main --config=configs/ref_stats_cifar10.py --workdir=DIR` "
            "(or configs/ref_stats_folder.py for an image folder) and pass --config.reference_stats=DIR/stats.npz.")
    if not reference_stats:
        raise ValueError(f"config.reference_stats is empty: FID needs the data's feature statistics. {hint}")
    extractor = features_lib.from_config(features_cfg)
    mu, sigma, _ = stats.load(reference_stats, dim=extractor.dim, hint=hint)
    return Target(f"diffusers:{checkpoint}", apply, model.params, model.schedule, model.image_shape,
                  extractor.name, on_images(extractor.features), (mu, sigma), None, None,
                  on_images(extractor.logits_numpy), _unet_apply_skip(model.config), model.num_blocks)
