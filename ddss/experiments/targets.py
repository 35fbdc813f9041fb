"""What an evaluating experiment samples from and how it scores the samples.

A `Target` bundles a model (ε function with its parameters passed explicitly, the schedule, the
image shape) with a feature space and reference statistics. Config `model` picks one:

  "gmm"        the analytic Gaussian mixture (exact ε); scored in data space against its exact moments
  "digits"     the embedded digits DDPM; scored in the digits classifier's feature space against all
               1797 digits, with the train-vs-test-split floor
  "diffusers"  a diffusers UNet2DModel checkpoint directory (`config.checkpoint`), converted on load;
               unscored until a feature network for its data is configured (rows carry fid = null)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np

from ddss import schedules
from ddss.data import digits as digits_data
from ddss.metrics import fid, kid
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

    def score(self, samples: np.ndarray) -> dict:
        if self.features is None:
            return {"fid": None, "kid": None, "kid_std": None, "feature_space": None}
        return score_features(self.features(samples), self.reference_stats, self.reference_features,
                              self.feature_space)

    def score_floor(self) -> dict | None:
        if self.floor is None:
            return None
        _, feats, stats, ref = self.floor
        return score_features(feats, stats, ref, self.feature_space)


def score_features(feats, stats, ref_feats, space, *, num_subsets: int = 20) -> dict:
    m, s = kid.kid(feats, ref_feats, num_subsets=num_subsets, subset_size=min(1000, len(feats), len(ref_feats)))
    return {"fid": fid.frechet_distance_of(feats, *stats), "kid": m, "kid_std": s, "feature_space": space}


def batched(fn, batch: int = 1000):
    """A jitted feature function applied 1000 images at a time, returning float64 numpy."""
    jitted = jax.jit(fn)
    return lambda x: np.concatenate([np.asarray(jitted(x[i:i + batch]), np.float64) for i in range(0, len(x), batch)])


def gmm_target(gmm_cfg, schedule: schedules.Schedule, num_samples: int, key) -> Target:
    mixture = gmm.random_mixture(gmm_cfg.seed, event_shape=tuple(gmm_cfg.event_shape),
                                 num_components=gmm_cfg.num_components)
    eps = gmm.eps_fn(mixture, schedule)
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
    truth = (np.asarray(gmm.mean(mixture)), np.asarray(gmm.covariance(mixture)))
    reference = flat(gmm.sample(mixture, key, num_samples))
    floor = np.asarray(gmm.sample(mixture, jax.random.fold_in(key, 1), num_samples))
    return Target("gmm", lambda p, x, t: eps(x, t), {}, schedule, mixture.event_shape, "data", flat, truth,
                  reference, (floor, flat(floor), truth, reference))


def digits_target(checkpoint: str = "") -> Target:
    model = digits_model.load(checkpoint or None)
    features = batched(digits_model.feature_fn())
    ref = features(digits_data.load("all")[0])
    test_images = digits_data.load("test")[0]
    train = features(digits_data.load("train")[0])
    return Target("digits", lambda p, x, t: unet.eps_fn(model.config, p)(x, t), model.params, model.schedule,
                  model.image_shape, "digits_classifier", features, fid.statistics(ref), ref,
                  (test_images, features(test_images), fid.statistics(train), train))


def diffusers_target(checkpoint: str) -> Target:
    if not checkpoint:
        raise ValueError(f"config.checkpoint is empty. {_CIFAR10_HINT}")
    model = convert.load_diffusers(checkpoint)
    return Target(f"diffusers:{checkpoint}", lambda p, x, t: unet.eps_fn(model.config, p)(x, t), model.params,
                  model.schedule, model.image_shape, None, None, None, None, None)
