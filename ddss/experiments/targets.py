"""What an evaluating experiment samples from, and the feature spaces it is scored in.

A `Target` bundles a model (ε function with its parameters passed explicitly, the schedule, the
image shape) with two feature `Space`s:

  train  the space the learning objectives see: the DDSS loss, its validation and best-parameter
         choice, and the search's fitness all compute there;
  eval   the space the headline scores come from, which no objective, validation or fitness uses.

Config `model` picks one:

  "gmm"        the analytic Gaussian mixture (exact ε). There is no feature network: both spaces are
               the data itself, scored against the mixture's *exact* moments (so the two coincide,
               and every row says so).
  "digits"     the embedded digits DDPM. Train space: the digits classifier (`digits`); evaluation
               space: the independent evaluation network (`digits_eval`: another architecture, seed
               and split). Both against all 1797 digits; the `data` row is the test split against
               the train split.
  "diffusers"  a diffusers UNet2DModel checkpoint directory (`config.checkpoint`), converted on load;
               train space `config.features` against `config.reference_stats`, evaluation space
               `config.eval_features` against `config.eval_reference_stats`. Without the latter two
               the evaluation space is the train space, and every row and the printed table say so.
  "adm"        an openai ADM / improved-DDPM checkpoint (`config.checkpoint`, its flags in
               `config.adm.flags`), optionally guided by its noisy classifier (`config.adm.classifier`,
               `classifier_scale`); spaces as for "diffusers". A class-conditional or guided model
               samples with class labels (`num_classes` > 0): the bank is `conditioning.Labelled`.

Scoring quantises image samples to uint8 first (round, then clip to [0, 255]), as saved images
are. A row's `fid` is the evaluation space's FID; `fid_train_space` sits beside it for diagnosis,
with k-NN precision and recall (k = 3) in the evaluation space where reference features exist,
KID, and the Inception Score of the evaluation network's classifier when it has one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ddss import schedules
from ddss.data import digits as digits_data
from ddss.metrics import features as features_lib
from ddss.metrics import fid, inception_score, kid, precision_recall, stats
from ddss.models import convert, gmm, pretrained
from ddss.samplers import conditioning
from ddss.models import digits as digits_model

MODELS = ("gmm", "digits", "diffusers", "adm")
PR_NEIGHBOURS = 3  # k of the k-NN precision and recall
_CIFAR10_HINT = ("Set --config.checkpoint=DIR to a diffusers UNet2DModel checkpoint directory (config.json + "
                 "diffusion_pytorch_model.safetensors), e.g. `huggingface-cli download google/ddpm-cifar10-32 "
                 "--local-dir DIR`.")


def quantize_uint8(images) -> np.ndarray:
    """Images in [-1, 1] as a saved uint8 image holds them: round to 256 levels, then clip; back in [-1, 1].

    A NaN stays NaN, so the feature extractor's check still reports it."""
    levels = np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0.0, 255.0)
    return (levels / 127.5 - 1.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Space:
    """A feature space with its reference data: what FID, KID, precision and recall are measured in."""

    name: str
    identity: dict  # {"name": ..., "sha256": weights} : stable, from the weight file's bytes
    features: Callable[[np.ndarray], np.ndarray]  # images -> float64 [N, D]
    reference_stats: tuple[np.ndarray, np.ndarray]
    reference_features: np.ndarray | None = None  # KID, precision and recall need them
    logits: Callable[[np.ndarray], np.ndarray] | None = None  # images -> classifier logits (Inception Score)

    def score(self, images, *, reference: tuple | None = None, num_subsets: int = 20) -> dict:
        """FID (float64), KID, precision/recall (k = 3) and IS of `images` (already quantised).

        `reference = (stats, features)` replaces the space's own reference data (the data row)."""
        ref_stats, ref_feats = reference if reference is not None else (self.reference_stats, self.reference_features)
        return self.score_features(self.features(images), ref_stats, ref_feats, num_subsets=num_subsets,
                                   logits=self.logits(images) if self.logits is not None and len(images) >= 10
                                   else None)

    @staticmethod
    def score_features(feats, ref_stats, ref_feats, *, num_subsets: int = 20, logits=None) -> dict:
        out = {"fid": fid.frechet_distance_of(feats, *ref_stats), "kid": None, "kid_std": None,
               "precision": None, "recall": None}
        if ref_feats is not None:
            out["kid"], out["kid_std"] = kid.kid(feats, ref_feats, num_subsets=num_subsets,
                                                 subset_size=min(1000, len(feats), len(ref_feats)))
            if min(len(feats), len(ref_feats)) > PR_NEIGHBOURS:
                out["precision"], out["recall"] = precision_recall.precision_recall(ref_feats, feats,
                                                                                     k=PR_NEIGHBOURS)
        if logits is not None:
            out["is"], out["is_std"] = inception_score.inception_score(logits)
        return out


@dataclasses.dataclass(frozen=True)
class Target:
    name: str
    apply: Callable  # (model_params, x, t, y=None) -> ε̂; y [B] class labels (None for an unconditional target)
    params: Any
    schedule: schedules.Schedule
    image_shape: tuple[int, ...]
    train: Space | None  # what objectives, validation and fitness see
    eval: Space | None  # what the headline scores come from; None: the train space (flagged)
    # The data row: (images, {"train": (stats, features), "eval": (stats, features)}) of a held-out split
    floor: tuple | None = None
    quantize: bool = True  # image targets score uint8-quantised samples
    # (model_params, x, t, skip_mask [L] traced or None, skip static tuple, y=None) -> ε̂, and L: for pruning searches
    apply_skip: Callable | None = None
    num_blocks: int = 0
    # A stable identity of the model: the sha256 of its weight files' bytes, or the mixture's
    # specification. Caches key on it, never on arrays computed at run time.
    identity: str = ""
    # Class-conditional sampling (ADM): labels are drawn over `num_classes` (0: none), and `guidance`
    # says how ε is guided ({"kind": "classifier", "scale": s, "classifier_sha256": ...}; None: unguided).
    num_classes: int = 0
    guidance: dict | None = None
    # The model's own ancestral sampler, where it differs from the ε route: `apply_ancestral(p, x, t, y)`
    # is its unguided model function (ε, then the variance channels when `learned_variance`), and
    # `cond_fn(p, x, t, y)` the classifier's s·∇ₓ log p(y | x_t), guidance's condition_mean route.
    apply_ancestral: Callable | None = None
    learned_variance: bool = False
    cond_fn: Callable | None = None

    @property
    def eval_space(self) -> Space | None:
        return self.eval if self.eval is not None else self.train

    @property
    def spaces_coincide(self) -> bool:
        return self.eval is None or self.eval.identity == (self.train.identity if self.train else None)

    def describe(self) -> dict:
        """The spaces of every row: names and weight hashes, and whether they coincide."""
        space = lambda s: None if s is None else s.identity
        return {"eval_features": space(self.eval_space), "train_features": space(self.train),
                "spaces_coincide": self.spaces_coincide, "quantized": "uint8" if self.quantize else None}

    def score(self, samples: np.ndarray, *, floor: bool = False) -> dict:
        """A row's scores: the evaluation space's (headline `fid`, precision, recall, KID, IS) and the
        train space's FID (`fid_train_space`)."""
        if self.train is None:
            return {"fid": None, "fid_train_space": None, "kid": None, "kid_std": None, "precision": None,
                    "recall": None, "feature_space": None, **self.describe()}
        if self.quantize and not floor:
            samples = quantize_uint8(samples)
        refs = self.floor[1] if floor else {}
        scores = self.eval_space.score(samples, reference=refs.get("eval" if self.eval is not None else "train"))
        if self.eval is not None:
            train_fid = self.train.score_features(self.train.features(samples),
                                                  *(refs.get("train") or (self.train.reference_stats, None)))["fid"]
        else:
            train_fid = scores["fid"]
        return {**scores, "fid_train_space": train_fid, "feature_space": self.eval_space.name, **self.describe()}


def files_sha256(*paths: str) -> str:
    """sha256 over the bytes of the files that exist among `paths`, each preceded by its base name."""
    digest = hashlib.sha256()
    for path in paths:
        if os.path.isfile(path):
            digest.update(os.path.basename(path).encode() + b"\0")
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
    return digest.hexdigest()


def weights_identity(name: str, extractor=None, path: str | None = None) -> dict:
    """{"name", "sha256"} of a feature network: the sha256 of its weight file's bytes (or, for
    parameters passed in directly, of the parameter arrays' bytes)."""
    if extractor is not None and hasattr(extractor, "identity"):
        return {"name": name, **{k: v for k, v in extractor.identity().items() if k != "name"}}
    digest = hashlib.sha256()
    if path is not None:
        with open(path, "rb") as f:
            digest.update(f.read())
    else:
        for leaf in jax.tree_util.tree_leaves(extractor.params if extractor is not None else ()):
            digest.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return {"name": name, "sha256": digest.hexdigest()}


def extractor_space(extractor, reference_stats, reference_features=None, name: str | None = None) -> Space:
    """A Space over a `ddss.metrics.features` extractor (its host-side batched features and logits)."""
    name = name or extractor.name
    return Space(name, weights_identity(name, extractor), extractor.features, reference_stats, reference_features,
                 extractor.logits_numpy if extractor.logits_apply is not None else None)


def feature_network(model: str, features_cfg=None) -> tuple[Callable, Any]:
    """(apply(params, images) -> features, params): the *train* space as a jittable function (what
    DDSS differentiates through and the search's fitness scores in)."""
    if model == "gmm":
        return (lambda p, x: x.reshape(x.shape[0], -1)), {}
    extractor = features_lib.get("digits") if model == "digits" else features_lib.from_config(features_cfg)
    return extractor.apply, extractor.params


def gmm_target(gmm_cfg, schedule: schedules.Schedule, num_samples: int, key, schedule_name: str = "linear") -> Target:
    mixture = gmm.random_mixture(gmm_cfg.seed, event_shape=tuple(gmm_cfg.event_shape),
                                 num_components=gmm_cfg.num_components)
    eps = gmm.eps_fn(mixture, schedule)
    flat = lambda x: np.asarray(x, np.float64).reshape(len(x), -1)
    truth = (np.asarray(gmm.mean(mixture)), np.asarray(gmm.covariance(mixture)))
    reference = flat(gmm.sample(mixture, key, num_samples))
    floor = np.asarray(gmm.sample(mixture, jax.random.fold_in(key, 1), num_samples))
    data = Space("data", {"name": "data", "sha256": None}, flat, truth, reference)
    spec = json.dumps({"gmm": dataclasses.asdict(gmm_cfg) if dataclasses.is_dataclass(gmm_cfg) else dict(gmm_cfg),
                       "schedule": schedule_name, "T": schedule.num_timesteps}, sort_keys=True, default=list)
    return Target("gmm", lambda p, x, t, y=None: eps(x, t), {}, schedule, mixture.event_shape, data, None,
                  (floor, {"train": (truth, reference)}), quantize=False,
                  apply_skip=lambda p, x, t, mask, skip, y=None: eps(x, t), num_blocks=0,
                  identity=hashlib.sha256(spec.encode()).hexdigest())


def _unet_apply(model: pretrained.DiffusionModel):
    """(model_params, x, t) -> ε̂: the model's prediction converted to ε, its learned variance dropped."""
    return lambda p, x, t, y=None: pretrained.eps_fn(model, p)(x, t)


def _unet_apply_skip(model: pretrained.DiffusionModel):
    return lambda p, x, t, mask, skip, y=None: pretrained.eps_fn(model, p, skip_mask=mask, skip=skip)(x, t)


def _digits_space(extractor) -> tuple[Space, dict]:
    """The space of one digits feature network against all 1797 digits, and its data-row reference
    (the train split, for the test split's row)."""
    everything = extractor.features(digits_data.load("all")[0])
    train = extractor.features(digits_data.load("train")[0])
    space = extractor_space(extractor, fid.statistics(everything), everything)
    return space, (fid.statistics(train), train)


def digits_target(checkpoint: str | None = None) -> Target:
    """The shipped digits DDPM: trained against the digits classifier, scored in the evaluation network."""
    path = checkpoint or digits_model.UNET_FILE
    model = digits_model.load(path)
    train, train_floor = _digits_space(features_lib.get("digits"))
    train = dataclasses.replace(train, reference_stats=digits_model.reference_stats("all"))  # the shipped file
    evaluation, eval_floor = _digits_space(features_lib.get("digits_eval"))
    test_images = digits_data.load("test")[0]
    return Target("digits", _unet_apply(model), model.params, model.schedule,
                  model.image_shape, train, evaluation, (test_images, {"train": train_floor, "eval": eval_floor}),
                  apply_skip=_unet_apply_skip(model), num_blocks=model.num_blocks, identity=files_sha256(path))


def _spaces(features_cfg, reference_stats, eval_features_cfg, eval_reference_stats, ref_hint: str):
    """(train space, evaluation space or None) from the feature configs and their statistics files."""
    hint = (f"Compute it once with `ddss --config={ref_hint} --workdir=DIR` "
            "(or --config=ref_stats_folder for an image folder) and pass --config.{field}=DIR/stats.npz.")
    if not reference_stats:
        raise ValueError(f"config.reference_stats is not set: FID needs the data's feature statistics. "
                         f"{hint.format(field='reference_stats')}")
    extractor = features_lib.from_config(features_cfg)
    mu, sigma, _ = stats.load(reference_stats, dim=extractor.dim, hint=hint.format(field="reference_stats"))
    train = extractor_space(extractor, (mu, sigma))
    evaluation = None
    if eval_features_cfg is not None and eval_features_cfg.get("name"):
        if not eval_reference_stats:
            raise ValueError("config.eval_features is set but config.eval_reference_stats is not: the evaluation "
                             f"space needs the data's statistics in it. {hint.format(field='eval_reference_stats')}")
        eval_extractor = features_lib.from_config(eval_features_cfg)
        e_mu, e_sigma, _ = stats.load(eval_reference_stats, dim=eval_extractor.dim,
                                      hint=hint.format(field="eval_reference_stats"))
        evaluation = extractor_space(eval_extractor, (e_mu, e_sigma))
    return train, evaluation


def diffusers_target(checkpoint: str | None, features_cfg=None, reference_stats: str | None = None,
                     eval_features_cfg=None, eval_reference_stats: str | None = None) -> Target:
    if not checkpoint:
        raise ValueError(f"config.checkpoint is not set. {_CIFAR10_HINT}")
    model = convert.load_diffusers(checkpoint)
    apply = _unet_apply(model)
    directory = convert.unet_directory(os.path.expanduser(checkpoint))
    weights = files_sha256(*(os.path.join(directory, name) for name in ("config.json", convert.WEIGHTS,
                                                                          convert.PICKLED_WEIGHTS)))
    spec = json.dumps(model.schedule_spec, sort_keys=True)  # the schedule's specification, not its float table
    if model.prediction != "eps":  # what the network predicts changes every sample (ε-prediction keys unchanged)
        spec += f":{model.prediction}"
    common = dict(apply_skip=_unet_apply_skip(model), num_blocks=model.num_blocks,
                  identity=hashlib.sha256(f"{weights}:{spec}".encode()).hexdigest())
    if features_cfg is None or not features_cfg.get("name"):
        return Target(f"diffusers:{checkpoint}", apply, model.params, model.schedule, model.image_shape, None, None,
                      **common)
    train, evaluation = _spaces(features_cfg, reference_stats, eval_features_cfg, eval_reference_stats,
                                "ref_stats_cifar10")
    return Target(f"diffusers:{checkpoint}", apply, model.params, model.schedule, model.image_shape, train,
                  evaluation, **common)


_ADM_HINT = ("Set --config.checkpoint=FILE to openai's checkpoint (e.g. 64x64_diffusion.pt from guided-diffusion, "
             "imagenet64_uncond_100M_1500K.pt from improved-diffusion) and config.adm.flags to the "
             "create_model_and_diffusion flags that built it.")


def adm_target(checkpoint: str | None, adm_cfg, features_cfg=None, reference_stats: str | None = None,
               eval_features_cfg=None, eval_reference_stats: str | None = None) -> Target:
    """An openai ADM / improved-DDPM checkpoint (`ddss.models.adm`), optionally with its noisy classifier.

    `adm_cfg`: `flags` (the checkpoint's create_model_and_diffusion flags; a converted .safetensors
    needs none), `classifier` (a classifier checkpoint, or None), `classifier_flags`, and
    `classifier_scale` (s of classifier guidance; 0 samples unguided). A class-conditional model, or a
    guided one, samples with class labels, and its target says so (`num_classes`)."""
    from ddss.models import adm
    from ddss.samplers import guidance

    if not checkpoint:
        raise ValueError(f"config.checkpoint is not set. {_ADM_HINT}")
    flags = dict(adm_cfg.get("flags") or {})
    model = adm.load(checkpoint, **flags)
    scale = float(adm_cfg.get("classifier_scale") or 0.0)
    classifier_path = adm_cfg.get("classifier") or None
    if scale and not classifier_path:
        raise ValueError(f"config.adm.classifier_scale = {scale} asks for classifier guidance, but config.adm."
                         "classifier is not set: pass the noisy classifier's checkpoint (e.g. 64x64_classifier.pt) "
                         "or set classifier_scale=0.")
    weights = files_sha256(os.path.expanduser(checkpoint))
    spec = json.dumps({"schedule": model.schedule_spec, "rescale": model.rescale_timesteps,
                       "prediction": model.prediction}, sort_keys=True)
    c = model.config.in_channels
    cond = model.class_cond

    def labels(y):
        if y is None:
            raise ValueError("This ADM model samples with class labels (it is class-conditional or guided): pass "
                             "labels y [B] beside the noise (ddss.samplers.conditioning.Labelled).")
        if not isinstance(y, jax.core.Tracer):
            conditioning.check(y, num_classes, what="class labels y")
        return y

    def net(p, x, t, y, mask=None, skip=()):
        return model.model_output(x, t, labels(y) if cond else None, mask, skip, params=p["model"])

    def raw_eps(p, x, t, y, mask=None, skip=()):
        from ddss.models import adapters

        return adapters.as_eps_fn(lambda x_, t_: net(p, x_, t_, y, mask, skip)[..., :c], model.schedule,
                                  model.prediction)(x, t)

    params, guidance_info, cond_fn = {"model": model.params}, None, None
    num_classes = model.config.num_classes if cond else 0
    if scale:
        c_config, c_params = adm.load_classifier(classifier_path, **dict(adm_cfg.get("classifier_flags") or {}))
        if c_config.image_size != model.config.image_size:
            raise ValueError(f"The classifier {classifier_path} is for {c_config.image_size}×{c_config.image_size} "
                             f"images, the model samples {model.config.image_size}×{model.config.image_size}: pass "
                             f"the classifier of the model's resolution (e.g. {model.config.image_size}x"
                             f"{model.config.image_size}_classifier.pt) with its classifier_image_size.")
        if cond and c_config.num_classes != model.config.num_classes:
            raise ValueError(f"The classifier has {c_config.num_classes} classes, the model {model.config.num_classes}.")
        params["classifier"] = c_params
        num_classes = c_config.num_classes
        logits = lambda p: (lambda x, t: adm.logits_fn(c_config, p["classifier"])(x, model.network_time(t)))
        guidance_info = {"kind": "classifier", "scale": scale,
                         "classifier_sha256": files_sha256(os.path.expanduser(classifier_path))}
        spec += f":classifier={guidance_info['classifier_sha256']}:scale={scale!r}"

        def apply_skip(p, x, t, mask, skip, y=None):
            eps = lambda x_, t_, y_: raw_eps(p, x_, t_, y_, mask, skip)
            return guidance.classifier_guided(eps, logits(p), model.schedule, scale)(x, t, labels(y))

        def cond_fn(p, x, t, y=None):
            return guidance.classifier_gradient(logits(p), scale)(x, t, labels(y))
    else:
        def apply_skip(p, x, t, mask, skip, y=None):
            return raw_eps(p, x, t, y, mask, skip)

    def apply_ancestral(p, x, t, y=None):
        if not model.learned_variance:
            return raw_eps(p, x, t, y)
        out = net(p, x, t, y)
        return jnp.concatenate([raw_eps(p, x, t, y), out[..., c:]], axis=-1) if model.prediction != "eps" else out

    name = f"adm:{checkpoint}"
    common = dict(apply_skip=apply_skip, num_blocks=model.num_blocks, num_classes=num_classes,
                  guidance=guidance_info, apply_ancestral=apply_ancestral, learned_variance=model.learned_variance,
                  cond_fn=(lambda p, x, t, y=None: cond_fn(p, x, t, y)) if cond_fn else None,
                  identity=hashlib.sha256(f"{weights}:{spec}".encode()).hexdigest())
    apply = lambda p, x, t, y=None: apply_skip(p, x, t, None, (), y)
    shape = (model.config.image_size, model.config.image_size, c)
    if features_cfg is None or not features_cfg.get("name"):
        return Target(name, apply, params, model.schedule, shape, None, None, **common)
    train, evaluation = _spaces(features_cfg, reference_stats, eval_features_cfg, eval_reference_stats,
                                "ref_stats_imagenet64")
    return Target(name, apply, params, model.schedule, shape, train, evaluation, **common)
