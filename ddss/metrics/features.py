"""One feature-extractor interface: every experiment picks its metric space by config.

A `FeatureExtractor` holds a pure `apply(params, images) -> [N, dim]` (jittable, differentiable: the
DDSS loss back-propagates through it) and its params, passed explicitly so `jit` and `grad` treat
them as arguments rather than baked-in constants. Three are built in:

  "inception"  pytorch-fid's FID Inception-v3 (`ddss.metrics.inception`): 2048-d pool features, or
               another output (`output="pool_768"`, ...); `logits` give the Inception Score.
               Weights: `weights=PATH` or the default search path (see `inception.load_params`).
               A .pth file must be pytorch-fid's (its sha256 starts with 6726825d); to score
               with other Inception-v3 weights of the same architecture on purpose, pass
               `get("inception", weights=PATH, check_hash=False)` (config:
               `--config.features.check_hash=False`).
  "digits"     the embedded digits classifier (64-d penultimate features; its logits give a
               digits Inception Score). Images [N, 8, 8, 1]. The learned samplers' loss uses it.
  "digits_eval" the embedded digits *evaluation* network (`ddss.models.eval_net`: an MLP of another
               architecture, seed and split; 64-d features and logits), used by no loss: scores in
               its space are an independent evaluation. Images [N, 8, 8, 1].

Every extractor carries `weights_sha256`, the sha256 of its weight file's bytes (or, for parameters
passed in directly, of the parameter arrays: `params_sha256`), and `identity()` ->
{"name", "sha256"}: a stable identity to record next to scores, never derived from computed floats.

Config (`config.features`, `config.eval_features`): `name`, `weights` ("" = default), `output`
(inception only), `check_hash` (inception only, default True: False accepts a .pth other than
pytorch-fid's file), `batch_size` (host-side extraction).

Input checks. Every extractor takes float NHWC images in [-1, 1] (what the project's samplers and
data loaders produce) and refuses, with one ValueError naming the range it detected and the fix:
  * integer dtypes (uint8 images are [0, 255]: x.astype(np.float32) / 127.5 - 1), and float values
    outside [-1, 1] (beyond 1e-3; [0, 255] floats included: x / 127.5 - 1),
  * NaN or inf, an empty batch, the wrong rank, channel count or (digits) image size,
  * images that look like [0, 1] (map them with x * 2 - 1), by this rule (`looks_like_unit_range`):
    a batch of at least `RANGE_GUESS_MIN_IMAGES` = 8 images whose every value is >= 0 and that is not
    constant. A [-1, 1] image with no value below 0 has no pixel darker than mid-grey in any channel;
    that happens for a few bright images, but for 8 independent images at once it is implausible
    (even if 1 image in 10 were that bright, 1e-8), while a [0, 1] batch always has min >= 0. Digits
    samples and data have a -1 background, so they never come close. Smaller batches and constant
    batches (e.g. all-zero placeholders, mid-grey in [-1, 1]) carry too little evidence and pass.
    `check_range=False` (on `features`, `logits_numpy`, `__call__`, `logits`, `check`) skips this
    guess only, for a set of genuinely bright [-1, 1] images; the hard [-1, 1] bounds always apply.
Under jit (traced images) no value check runs.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from ddss import parallel
from ddss.metrics import inception

EXTRACTORS = ("inception", "digits", "digits_eval")
RANGE_GUESS_MIN_IMAGES = 8  # see the module docstring: fewer [0, 1]-looking images are not refused


def looks_like_unit_range(images) -> bool:
    """True for a batch that looks like [0, 1] images rather than [-1, 1] ones: at least
    `RANGE_GUESS_MIN_IMAGES` images, every value >= 0, not constant (module docstring)."""
    a = np.asarray(images)
    if a.ndim < 1 or len(a) < RANGE_GUESS_MIN_IMAGES:
        return False
    lo, hi = float(a.min()), float(a.max())
    return lo >= 0.0 and hi > lo


def _positive_batch_size(batch_size) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer (or None for the extractor's default), "
                         f"got {batch_size!r}.")


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureExtractor:
    name: str
    dim: int
    image_shape: tuple[int | None, int | None, int]  # (H, W, C); None = any size
    apply: Callable[[Any, jax.Array], jax.Array]
    params: Any
    logits_apply: Callable[[Any, jax.Array], jax.Array] | None = None
    batch_size: int = 250
    weights_sha256: str = ""  # sha256 of the weight file's bytes (or of the parameter bytes)

    def __post_init__(self):  # every feature network's matmuls in float32, on TPUs too (ddss.parallel.precise)
        object.__setattr__(self, "apply", parallel.precise_fn(self.apply))
        if self.logits_apply is not None:
            object.__setattr__(self, "logits_apply", parallel.precise_fn(self.logits_apply))

    def identity(self) -> dict[str, str]:
        """{"name": ..., "sha256": ...}: which network, and exactly which weights."""
        return {"name": self.name, "sha256": self.weights_sha256}

    def check(self, images, *, check_range: bool = True) -> None:
        """One clear error for images this extractor would mis-score (skipped under jit): see the
        module docstring. `check_range=False` skips only the [0, 1] guess."""
        h, w, c = self.image_shape
        what = f"The {self.name} feature extractor"
        if isinstance(images, jax.core.Tracer):
            return
        shape = np.shape(images)
        dtype = getattr(images, "dtype", None)
        if dtype is None:
            dtype = np.asarray(images).dtype
        if len(shape) == 4 and shape[0] == 0:
            raise ValueError(f"{what} got an empty batch (0 images, shape {shape}); pass at least one image.")
        if np.issubdtype(dtype, np.integer):
            raise ValueError(f"{what} expects float images in [-1, 1], got dtype {dtype}: these look like [0, 255] "
                             "images. Map them with images.astype(np.float32) / 127.5 - 1.")
        inception.check_images(images, channels=c, what=what)  # rank, channels, dtype, NaN/inf, [-1, 1] bounds
        got = tuple(shape[1:3])
        if h is not None and got != (h, w):
            raise ValueError(f"{what} takes {h}×{w} images, got {got[0]}×{got[1]}.")
        if check_range and looks_like_unit_range(images):
            a = np.asarray(images)
            raise ValueError(f"{what} expects images in [-1, 1], but all {len(a)} images have values in "
                             f"[{float(a.min()):.4g}, {float(a.max()):.4g}], none below 0: they look like [0, 1]: map "
                             "them with x * 2 - 1. (If they really are [-1, 1] images without a single value below 0, "
                             "pass check_range=False.)")

    def __call__(self, images, *, check_range: bool = True) -> jax.Array:
        """Features [N, dim] (float32); usable inside jit and grad."""
        self.check(images, check_range=check_range)
        return self.apply(self.params, images)

    def logits(self, images, *, check_range: bool = True) -> jax.Array:
        if self.logits_apply is None:
            raise ValueError(f"The {self.name} feature extractor has no classifier logits.")
        self.check(images, check_range=check_range)
        return self.logits_apply(self.params, images)

    @functools.cached_property
    def _jitted(self):
        return jax.jit(self.apply), (jax.jit(self.logits_apply) if self.logits_apply else None)

    def _batched(self, fn, images, batch_size, progress, desc, check_range) -> np.ndarray:
        _positive_batch_size(batch_size)
        images = np.asarray(images)
        self.check(images, check_range=check_range)
        return self._rows(fn, lambda a, b: images[a:b], len(images), batch_size, progress, desc)

    def _rows(self, fn, read, n, batch_size, progress, desc) -> np.ndarray:
        """fn over rows [0, n) in fixed-size jitted batches, each split over the mesh's data axis; every
        process reads (`read(a, b)`) only the rows its devices take, and gets every row's result."""
        bs = min(batch_size or self.batch_size, n)
        out = []
        for start in tqdm(range(0, n, bs), desc=desc, disable=not progress, leave=False):
            m = min(bs, n - start)  # the last batch is padded: one compiled shape for the whole pass
            batch, _ = parallel.put_rows(lambda a, b: np.asarray(read(start + a, start + b), np.float32), m, size=bs)
            out.append(np.asarray(parallel.to_host(fn(self.params, batch)), np.float64)[:m])
        return np.concatenate(out)

    def features_of_rows(self, read, n: int, *, batch_size: int | None = None, check_range: bool = True,
                         progress: bool = False) -> np.ndarray:
        """`features` of n images that each process reads itself: `read(a, b)` returns images [a, b)
        (float [-1, 1], checked as `features` checks them); a process calls it only for the rows its
        devices take (`ddss.parallel.put_rows`), so on several hosts each loads its own share. Every
        process gets all n rows of features (float64)."""
        _positive_batch_size(batch_size)
        if n < 1:
            raise ValueError(f"The {self.name} feature extractor got an empty batch (0 images); pass at least one.")

        def checked(a, b):
            images = np.asarray(read(a, b))
            self.check(images, check_range=check_range)
            return images

        return self._rows(self._jitted[0], checked, n, batch_size, progress, f"{self.name} features")

    def features(self, images, *, batch_size: int | None = None, progress: bool = False,
                 check_range: bool = True) -> np.ndarray:
        """Host-side extraction in fixed-size jitted batches: float64 numpy [N, dim]. The whole set is
        checked first (`check`); `check_range=False` skips only the [0, 1] guess."""
        return self._batched(self._jitted[0], images, batch_size, progress, f"{self.name} features", check_range)

    def logits_numpy(self, images, *, batch_size: int | None = None, progress: bool = False,
                     check_range: bool = True) -> np.ndarray:
        """Host-side classifier logits [N, classes] (float64), checked as `features` is."""
        if self.logits_apply is None:
            raise ValueError(f"The {self.name} feature extractor has no classifier logits.")
        return self._batched(self._jitted[1], images, batch_size, progress, f"{self.name} logits", check_range)


def file_sha256(path: str) -> str:
    """sha256 (hex) of a file's bytes."""
    return inception.sha256_of(path)


def params_sha256(params) -> str:
    """sha256 (hex) of a parameter tree's arrays: each leaf's path, dtype, shape and raw bytes, in
    sorted path order (for parameters that come from no file)."""
    h = hashlib.sha256()
    leaves = [(jax.tree_util.keystr(path), np.asarray(leaf))
              for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]]
    for name, leaf in sorted(leaves, key=lambda item: item[0]):
        h.update(f"{name}|{leaf.dtype.str}|{leaf.shape}|".encode())
        h.update(np.ascontiguousarray(leaf).tobytes())
    return h.hexdigest()


def inception_extractor(weights: str | None = None, *, output: str = "pool", params=None,
                        batch_size: int = 50, check_hash: bool = True) -> FeatureExtractor:
    """The FID Inception; `params` overrides the weight file (random-weight tests). `check_hash=False`
    accepts a .pth whose sha256 is not pytorch-fid's (other weights of the same architecture)."""
    if output not in inception.OUTPUTS or output.startswith("logits"):
        raise ValueError(f"Inception feature output {output!r} is not one of pool, pool_64, pool_192, pool_768.")
    if params is None:
        path = weights or next((p for p in inception.default_paths() if os.path.isfile(p)), None)
        params = inception.load_params(path, check_hash=check_hash)  # with no file found, it lists where it looked
        sha256 = file_sha256(os.path.expanduser(path))
    else:
        sha256 = params_sha256(params)
    apply = lambda p, x: inception.apply(p, x, (output,))[output]
    logits = lambda p, x: inception.apply(p, x, ("logits_unbiased",))["logits_unbiased"]
    return FeatureExtractor(f"inception:{output}" if output != "pool" else "inception", inception.DIMS[output],
                            (None, None, 3), apply, params, logits, batch_size, sha256)


def digits_extractor(weights: str | None = None, *, batch_size: int = 1000) -> FeatureExtractor:
    from ddss.models import classifier, digits

    path = weights or digits.CLASSIFIER_FILE
    config, params = digits.load_classifier(path)
    model = classifier.Classifier(config)
    apply = lambda p, x: model.apply({"params": p}, x, return_features=True)[1]
    logits = lambda p, x: model.apply({"params": p}, x)
    return FeatureExtractor("digits", config.feature_dim, (config.image_size, config.image_size, config.channels),
                            apply, params, logits, batch_size, file_sha256(path))


def digits_eval_extractor(weights: str | None = None, *, batch_size: int = 1000) -> FeatureExtractor:
    """The digits evaluation network (`ddss.models.eval_net`), independent of the loss network."""
    from ddss.models import digits, eval_net

    path = weights or digits.EVAL_FILE
    config, params = digits.load_eval_network(path)
    model = eval_net.EvalNet(config)
    apply = lambda p, x: model.apply({"params": p}, x, return_features=True)[1]
    logits = lambda p, x: model.apply({"params": p}, x)
    return FeatureExtractor("digits_eval", config.feature_dim,
                            (config.image_size, config.image_size, config.channels),
                            apply, params, logits, batch_size, file_sha256(path))


def get(name: str, weights: str | None = None, **kwargs) -> FeatureExtractor:
    """The extractor `name` with `weights` (None: its default file); `kwargs` go to its constructor:
    `output`, `params`, `batch_size`, `check_hash` for "inception", `batch_size` for the digits networks."""
    if name == "inception":
        return inception_extractor(weights, **kwargs)
    if name == "digits":
        return digits_extractor(weights, **kwargs)
    if name == "digits_eval":
        return digits_eval_extractor(weights, **kwargs)
    raise ValueError(f"Unknown feature extractor {name!r}; choose one of {EXTRACTORS}.")


def from_config(cfg) -> FeatureExtractor:
    """`config.features` -> extractor: fields name, weights ("" = default), output and check_hash
    (inception), batch_size."""
    kwargs = {}
    if cfg.get("batch_size"):
        kwargs["batch_size"] = int(cfg.batch_size)
    if cfg.name == "inception" and cfg.get("output"):
        kwargs["output"] = cfg.output
    if cfg.name == "inception" and cfg.get("check_hash") is not None:
        kwargs["check_hash"] = bool(cfg.check_hash)
    return get(cfg.name, cfg.get("weights") or None, **kwargs)
