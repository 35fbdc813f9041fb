"""Reference feature statistics of a dataset: the (μ, Σ) that FID compares samples against.

Sources (`config.source`):
  "tfds"    a TFDS split (`config.data`: name, split, image_size, data_dir), read in order, every
            example (the last, short batch included)
  "folder"  every .png/.jpg/.jpeg/.bmp/.webp file directly in `config.folder` (sorted by name, as
            pytorch-fid's directory mode reads them); `config.image_size` center-crops and resizes,
            otherwise all images must share one size
  "digits"  the bundled 8×8 digits (`config.split`: all, train or test)
  "npz"     the uint8 images [N, H, W, C] under `arr_0` of an .npz file (`config.npz`): openai's
            reference batches (e.g. VIRTUAL_imagenet64_labeled.npz), read without pickle;
            `config.image_size` center-crops and resizes

Features come from `config.features` (`ddss.metrics.features`). Writes to the work directory:
  stats.npz     mu, sigma (float64; pytorch-fid's format), num_samples, info (JSON)
  info.json     the same description, readable
  features.npy  all features (float32), only with `config.save_features` (KID needs them); each
                batch is written into its rows as it is computed (a memory-mapped file)
and `partial.npz` (the accumulator: count, mean, scatter) every `checkpoint_every` batches, so a
killed run resumes where it stopped; it is removed when the statistics are complete.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from tqdm.auto import tqdm

from ddss import fields, parallel
from ddss.data import digits as digits_data
from ddss.data import tfds as tfds_data
from ddss.experiments import writers
from ddss.metrics import features, stats

SOURCES = ("tfds", "folder", "digits", "npz")


@dataclasses.dataclass(frozen=True)
class RefStatsConfig:
    """The checked scalar fields of a ref_stats config (the source's own fields are checked as they are read)."""

    source: str
    batch_size: int | None = None  # None: the feature extractor's own batch size
    max_samples: int | None = None  # None: every image of the source
    checkpoint_every: int = 20
    save_features: bool = False

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"Unknown source {self.source!r}; choose one of {SOURCES}.")
        fields.check("", self, max_samples=fields.OPT_INT_POS, checkpoint_every=fields.INT_POS,
                     save_features=fields.BOOL)
        if self.batch_size is not None:
            fields.check("", self, batch_size=fields.INT_POS)

    @classmethod
    def from_config(cls, config) -> "RefStatsConfig":
        # The source's own fields (read by `_source`) and the feature network's section, besides these.
        fields.check_known("", config, [f.name for f in dataclasses.fields(cls)] +
                           ["experiment", "features", "folder", "image_size", "split", "data", "npz"])
        return cls(**{f.name: config[f.name] for f in dataclasses.fields(cls) if f.name in config})


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def folder_files(folder: str) -> list[str]:
    if not folder:
        raise ValueError("config.folder is not set: set --config.folder=DIR to a directory of images.")
    folder = os.path.expanduser(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Image folder {folder} does not exist.")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise ValueError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) directly in {folder}.")
    return [os.path.join(folder, f) for f in files]


def read_images(paths: list[str], channels: int, image_size: int | None) -> np.ndarray:
    """Images as float32 [N, H, W, C] in [-1, 1]; one clear error when sizes differ and no image_size is set."""
    from PIL import Image

    out = []
    for path in paths:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB" if channels == 3 else "L"))
        arr = arr[..., None] if arr.ndim == 2 else arr
        if image_size:
            arr = tfds_data.center_crop_resize(arr, image_size)
        out.append(arr)
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise ValueError(f"Images differ in size ({sorted(shapes)[:3]} ...); set --config.image_size=N to "
                         "center-crop and resize them all to N×N.")
    return np.stack(out).astype(np.float32) / 127.5 - 1.0


def npz_images(path: str | None, channels: int):
    """The `arr_0` array of an .npz reference batch (uint8 [N, H, W, C]), checked."""
    if not path:
        raise ValueError("config.npz is not set: set --config.npz=FILE to an .npz of uint8 images under arr_0 "
                         "(openai's reference batches, e.g. VIRTUAL_imagenet64_labeled.npz).")
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Reference batch {path} does not exist.")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy raises ValueError, OSError, BadZipFile ... for damaged or foreign files
        raise ValueError(f"{path} is not a readable .npz file ({' '.join(str(e).split())[:120]}).") from None
    with archive:  # the array is read whole; the file is closed after
        if "arr_0" not in archive.files:
            raise ValueError(f"{path} has no arr_0 (it holds {archive.files[:5]}): a reference batch keeps its "
                             "images there.")
        try:
            images = archive["arr_0"]
        except ValueError as e:  # an object array needs pickle, which is never used here
            raise ValueError(f"{path}'s arr_0 cannot be read without pickle ({e}); it must be a uint8 array.") from None
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{path}'s arr_0 is {images.dtype} of shape {images.shape}; a reference batch holds uint8 "
                         "images [N, H, W, 3] (or [N, H, W, 1] / [N, H, W]).")
    if images.shape[-1] != channels:
        raise ValueError(f"{path} holds {images.shape[-1]}-channel images; the feature network takes {channels}.")
    return images


def _source(config, extractor):
    """(number of images, function from an index range to images, description)."""
    if config.source == "digits":
        images = digits_data.load(config.get("split", "all"))[0]
        return len(images), lambda a, b: images[a:b], {"source": "digits", "split": config.get("split", "all")}
    if config.source == "folder":
        files = folder_files(config.get("folder", ""))
        size = config.get("image_size") or None
        return (len(files), lambda a, b: read_images(files[a:b], extractor.image_shape[2], size),
                {"source": "folder", "folder": os.path.abspath(os.path.expanduser(config.folder)),
                 "image_size": size})
    if config.source == "npz":
        images = npz_images(config.get("npz"), extractor.image_shape[2])
        size = config.get("image_size") or None

        def read_npz(a, b):
            batch = np.asarray(images[a:b])
            if size:
                batch = np.stack([tfds_data.center_crop_resize(im, size) for im in batch])
            return batch.astype(np.float32) / 127.5 - 1.0

        return len(images), read_npz, {"source": "npz", "npz": os.path.abspath(os.path.expanduser(config.npz)),
                                       "image_size": size}
    data = tfds_data.from_config(config.data)
    source = tfds_data.open_source(data.name, data.split, data_dir=data.data_dir)

    def read(a, b):
        examples = [source[i] for i in range(a, b)]
        batch = next(tfds_data.batches_from_source(examples, b - a, 0, image_size=data.image_size, shuffle=False,
                                                   num_epochs=1, drop_remainder=False, name=data.name))
        return batch["image"]

    return len(source), read, {"source": "tfds", "dataset": data.name, "split": data.split,
                               "image_size": data.image_size}


@parallel.main_only
def save_partial(path: str, feats, **accumulator) -> None:
    """The accumulator, atomically; the features' rows before it are on disk first."""
    if feats is not None:
        feats.flush()  # the rows before `done` are on disk before the checkpoint says so
    tmp = path + ".tmp.npz"
    np.savez(tmp, **accumulator)
    os.replace(tmp, path)


@parallel.main_only
def finish(workdir: str, acc: stats.RunningStats, info: dict, feats, features_path: str, partial: str) -> None:
    stats.save(os.path.join(workdir, "stats.npz"), acc.mu, acc.sigma, num_samples=acc.count, info=info)
    if feats is not None:
        feats.flush()
        os.replace(features_path, os.path.join(workdir, "features.npy"))
    writers.write_json(os.path.join(workdir, "info.json"), info)
    if os.path.isfile(partial):
        os.remove(partial)


def run(config, workdir: str) -> dict:
    cfg = RefStatsConfig.from_config(config)
    if cfg.source == "folder":
        folder_files(config.get("folder", ""))  # a missing or empty folder is named before any network loads
    extractor = features.from_config(config.features)
    total, read, info = _source(config, extractor)
    writers.claim_workdir(workdir, config)
    total = min(total, cfg.max_samples) if cfg.max_samples else total
    batch_size = cfg.batch_size or extractor.batch_size
    every, save_features = cfg.checkpoint_every, cfg.save_features
    info = {**info, "features": extractor.name, "feature_dim": extractor.dim,
            "feature_weights": config.features.get("weights", "") or "default", "save_features": save_features}
    partial = os.path.join(workdir, "partial.npz")
    features_path = os.path.join(workdir, "features.partial.npy")

    acc, done = stats.RunningStats(), 0
    if os.path.isfile(partial):
        with np.load(partial, allow_pickle=False) as f:
            if json.loads(str(f["info"])) != info:
                raise ValueError(f"{partial} belongs to a different run ({str(f['info'])}); remove it or use "
                                 "another --workdir.")
            done = int(f["done"])
            if done:
                acc = stats.RunningStats(done, f["mean"], f["scatter"])
        print(f"resuming from image {done} of {total}")
    feats = None
    if save_features and parallel.is_main_process():  # rows [0, done) hold the features of a resumed run
        mode = "r+" if done else "w+"
        feats = np.lib.format.open_memmap(features_path, mode=mode, dtype=np.float32, shape=(total, extractor.dim))

    start_time = time.perf_counter()
    starts = range(done, total, batch_size)
    for i, start in enumerate(tqdm(starts, desc="reference statistics", unit="batch")):
        end = min(start + batch_size, total)
        # Each process reads the images its devices take; every process gets the whole batch's features
        # and sums them (float64, on the host) in the same order, so every host holds the same moments.
        f = extractor.features_of_rows(lambda a, b: read(start + a, start + b), end - start, batch_size=batch_size)
        acc = acc.update(f)
        if feats is not None:
            feats[start:end] = f
        if (i + 1) % every == 0 and end < total:
            save_partial(partial, feats, done=end, mean=acc.mean, scatter=acc.scatter, info=json.dumps(info))

    info = {**info, "num_samples": acc.count, "wall_time_s": time.perf_counter() - start_time}
    finish(workdir, acc, info, feats, features_path, partial)
    parallel.sync("ref_stats")  # the statistics are on disk before any process goes on to read them
    if parallel.is_main_process():
        print(f"wrote {os.path.join(workdir, 'stats.npz')}: {acc.count} images, {extractor.dim}-d {extractor.name} features")
    return {"num_samples": acc.count, "info": info, "stats": os.path.join(workdir, "stats.npz")}
