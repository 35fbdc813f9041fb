"""Image batches from TensorFlow Datasets (TFDS): CIFAR-10, ImageNet 64×64 and LSUN.

Supported names (`supported_datasets()`): "cifar10" (32×32, labels), "imagenet_resized/64x64"
(64×64, labels), "downsampled_imagenet/64x64" (64×64, no labels) and "lsun/<category>" for every
LSUN category TFDS knows (`lsun_categories()`; images of varying size, no labels). A ":version"
suffix ("cifar10:3.0.2") is passed on to TFDS.

Reading uses `tfds.data_source` (random access to ArrayRecord files, no TensorFlow needed): each
epoch visits the examples in the order of a permutation drawn from `np.random.default_rng((seed,
epoch))` (see `ddss.data.digits.index_batches`), so the same seed gives the same batches on every
run and a different seed a different order. Batches are dicts of NumPy arrays:
  'image'  float32 [B, H, W, 3] (NHWC) in [-1, 1], x / 127.5 − 1;
  'label'  int32 [B], only for datasets with labels.
image_size=None keeps the native size (all images must then share one size); image_size=N
center-crops each image to a square and resizes it to N×N with PIL's bicubic filter (antialiased
when shrinking); with resize=False, image_size=N only checks that images already are N×N.
drop_remainder=False keeps the last, smaller batch of each epoch (use it, with num_epochs=1 and
shuffle=False, for reference statistics over a whole split).

Nothing is downloaded unless download=True is passed. A dataset must be prepared once in the
ArrayRecord format, e.g. `tfds build cifar10 --file_format=array_record` (TFDS' command line, and
preparing most image datasets, need TensorFlow installed; reading does not). A dataset that is
missing, or prepared only as TFRecord (no random access), raises `DatasetNotPreparedError` with the
directory searched and the command that fixes it.

Configs: `DataConfig(name, split, image_size, data_dir)` is a frozen dataclass; `from_config`
builds one from an `ml_collections.ConfigDict` (or any mapping) and `batches_from_config` reads it.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from ddss.data.digits import index_batches

__all__ = [
    "FIXED_SIZE_DATASETS",
    "DatasetNotPreparedError",
    "DataConfig",
    "lsun_categories",
    "supported_datasets",
    "check_name",
    "from_config",
    "open_source",
    "batches",
    "batches_from_config",
    "batches_from_source",
    "center_crop_resize",
    "to_model_range",
]

FIXED_SIZE_DATASETS = ("cifar10", "imagenet_resized/64x64", "downsampled_imagenet/64x64")
_RANDOM_ACCESS_FORMAT = "array_record"


class DatasetNotPreparedError(FileNotFoundError):
    """A TFDS dataset is not prepared (as ArrayRecord) where the loader looked for it."""


def lsun_categories() -> tuple[str, ...]:
    """The LSUN categories (TFDS config names) of the installed tensorflow-datasets."""
    return tuple(config.name for config in tfds.builder_cls("lsun").BUILDER_CONFIGS)


def supported_datasets() -> tuple[str, ...]:
    """Every dataset name the loaders accept (without a ":version" suffix)."""
    return FIXED_SIZE_DATASETS + tuple(f"lsun/{category}" for category in lsun_categories())


def check_name(name: str) -> None:
    """Raises ValueError unless name (optionally with ":version") is a supported dataset."""
    base = name.split(":", 1)[0] if isinstance(name, str) else name
    if base not in supported_datasets():
        raise ValueError(
            f"Unknown dataset {name!r}. Supported: {', '.join(FIXED_SIZE_DATASETS)} and lsun/<category> "
            f"with category in {', '.join(lsun_categories())}."
        )


def _check_image_size(image_size: int | None) -> None:
    """Raises ValueError unless image_size is None or a positive int."""
    is_int = isinstance(image_size, int) and not isinstance(image_size, bool)
    if image_size is not None and (not is_int or image_size <= 0):
        raise ValueError(f"image_size must be None (native size) or a positive int, got {image_size!r}.")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which images to read: a TFDS dataset name, a split, the output size (None: native), a data_dir."""

    name: str
    split: str = "train"
    image_size: int | None = None
    data_dir: str | None = None

    def __post_init__(self):
        check_name(self.name)
        _check_image_size(self.image_size)
        if not isinstance(self.split, str) or not self.split:
            raise ValueError(f"split must be a non-empty string such as 'train', got {self.split!r}.")


def from_config(cfg: Any) -> DataConfig:
    """A DataConfig from an ml_collections ConfigDict, a mapping or a DataConfig (unknown keys: ValueError)."""
    if isinstance(cfg, DataConfig):
        return cfg
    values = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    fields = {field.name for field in dataclasses.fields(DataConfig)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"Unknown data config keys {unknown}; expected a subset of {sorted(fields)}.")
    return DataConfig(**values)


def _searched_dirs(data_dir: str | None) -> str:
    """The data_dir(s) TFDS looks in, for error messages."""
    if data_dir is not None:
        return str(data_dir)
    dirs = ", ".join(str(d) for d in tfds.core.utils.file_utils.list_data_dirs())
    return f"{dirs} (TFDS' default data_dir; set data_dir= or $TFDS_DATA_DIR to look elsewhere)"


def _preparation_problem(name: str, data_dir: str | None) -> str | None:
    """Why `name` cannot be read with random access from data_dir, or None if it is prepared."""
    builder = tfds.builder(name, data_dir=data_dir)
    root = data_dir if data_dir is not None else str(builder.data_dir_root)
    if not builder.is_prepared():
        return (
            f"Dataset {name!r} is not prepared: no TFDS files at {builder.data_dir}; searched data_dir: "
            f"{_searched_dirs(data_dir)}. The loaders never download implicitly. Prepare it once as "
            f"ArrayRecord (preparing usually needs TensorFlow installed; reading does not): `tfds build {name} "
            f"--data_dir={root} --file_format={_RANDOM_ACCESS_FORMAT}`, or in Python `tfds.builder({name!r}, "
            f"data_dir={root!r}, file_format={_RANDOM_ACCESS_FORMAT!r}).download_and_prepare()`, or pass "
            "download=True to the loader."
        )
    file_format = getattr(builder.info.file_format, "value", None)
    if file_format not in {f.value for f in tfds.core.file_adapters.FileFormat.with_random_access()}:
        return (
            f"Dataset {name!r} at {builder.data_dir} is prepared as {file_format}, "
            f"which has no random access. Convert it once, in an environment with TensorFlow: `tfds convert_format "
            f"--dataset_version_dir={builder.data_dir} --out_file_format={_RANDOM_ACCESS_FORMAT}`, or rebuild it "
            f"with `tfds build {name} --data_dir={root} --file_format={_RANDOM_ACCESS_FORMAT}`."
        )
    return None


def open_source(name: str, split: str = "train", *, data_dir: str | None = None, download: bool = False):
    """The random-access TFDS data source of a split (len() and [i] give decoded example dicts).

    Raises ValueError for an unknown name and DatasetNotPreparedError when the dataset is not prepared
    as ArrayRecord under data_dir. download=True prepares it (as ArrayRecord) first.
    """
    check_name(name)
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string such as 'train', got {split!r}.")
    builder_kwargs = {"file_format": _RANDOM_ACCESS_FORMAT} if download else None
    try:
        return tfds.data_source(name, split=split, data_dir=data_dir, download=download, builder_kwargs=builder_kwargs)
    except Exception as err:
        problem = _preparation_problem(name, data_dir)
        if problem is None:
            raise
        raise DatasetNotPreparedError(problem) from err


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 pixels 0..255 → float32 in [-1, 1]: x / 127.5 − 1."""
    return np.asarray(images, np.float32) / np.float32(127.5) - np.float32(1.0)


def center_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of a uint8 [H, W, C] image, resized to [size, size, C] (PIL bicubic)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return square
    pil = Image.fromarray(square[..., 0] if square.shape[-1] == 1 else square)
    resized = np.asarray(pil.resize((size, size), resample=Image.Resampling.BICUBIC))
    return resized.reshape(size, size, image.shape[-1])


def _prepare_image(image: Any, image_size: int | None, resize: bool, name: str) -> np.ndarray:
    """Checks one decoded image (uint8 [H, W, 3]) and brings it to image_size if asked."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name}: expected RGB images of shape [H, W, 3], got shape {image.shape}.")
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 pixels 0..255, got dtype {image.dtype}.")
    if image_size is None or image.shape[:2] == (image_size, image_size):
        return image
    if not resize:
        raise ValueError(
            f"{name}: image of size {image.shape[0]}x{image.shape[1]} does not match image_size={image_size} "
            "and resize=False; pass resize=True to center-crop and resize."
        )
    return center_crop_resize(image, image_size)


def _fetch(source: Sequence[Mapping[str, Any]], indices: np.ndarray) -> list:
    """The examples at indices, read in one call when the source supports it."""
    keys = [int(i) for i in indices]
    if hasattr(source, "__getitems__"):
        return list(source.__getitems__(keys))
    return [source[i] for i in keys]


def _batch(examples: list, image_size: int | None, resize: bool, name: str, shape: tuple | None) -> dict:
    """One output batch from decoded examples; every image must end up with `shape` (if given)."""
    images = [_prepare_image(example["image"], image_size, resize, name) for example in examples]
    shape = shape or images[0].shape
    for image in images:
        if image.shape != shape:
            raise ValueError(
                f"{name}: images differ in size ({shape[0]}x{shape[1]} and {image.shape[0]}x{image.shape[1]}); "
                "pass image_size=N to center-crop and resize them to N×N."
            )
    batch = {"image": to_model_range(np.stack(images))}
    if "label" in examples[0]:
        batch["label"] = np.asarray([example["label"] for example in examples], dtype=np.int32)
    return batch


def _generate(source, order: Iterator[np.ndarray], image_size, resize, name) -> Iterator[dict]:
    """The generator behind `batches_from_source` (arguments already checked)."""
    shape = None
    for indices in order:
        batch = _batch(_fetch(source, indices), image_size, resize, name, shape)
        shape = batch["image"].shape[1:]
        yield batch


def batches_from_source(
    source: Sequence[Mapping[str, Any]],
    batch_size: int,
    seed: int,
    *,
    image_size: int | None = None,
    resize: bool = True,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    name: str = "dataset",
) -> Iterator[dict[str, np.ndarray]]:
    """Batches from any random-access sequence of example dicts with a uint8 [H, W, 3] 'image'.

    Same options and output as `batches`; name only labels error messages. Image checks (shape,
    channels, dtype) happen as batches are read.
    """
    _check_image_size(image_size)
    order = index_batches(
        len(source), batch_size, seed, shuffle=shuffle, num_epochs=num_epochs, drop_remainder=drop_remainder
    )
    return _generate(source, order, image_size, resize, name)


def batches(
    name: str,
    split: str,
    batch_size: int,
    seed: int,
    *,
    image_size: int | None = None,
    resize: bool = True,
    data_dir: str | None = None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    download: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Batches {'image': float32 [B, H, W, 3] in [-1, 1], 'label': int32 [B] if any} of a TFDS split.

    name: a supported dataset ("cifar10", "imagenet_resized/64x64", "downsampled_imagenet/64x64",
    "lsun/<category>"); split: a TFDS split ("train", "test", "train[:10%]", ...).
    seed: fixes the order (a fresh permutation per epoch, from (seed, epoch)); unused if shuffle=False.
    image_size: None keeps the native size; N center-crops and resizes to N×N (only checks the size
    when resize=False). num_epochs=None repeats forever. drop_remainder=False keeps each epoch's last,
    smaller batch. download=True prepares a missing dataset instead of raising DatasetNotPreparedError.
    Name, split, size and batching arguments are checked at the call.
    """
    _check_image_size(image_size)
    source = open_source(name, split, data_dir=data_dir, download=download)
    return batches_from_source(
        source,
        batch_size,
        seed,
        image_size=image_size,
        resize=resize,
        shuffle=shuffle,
        num_epochs=num_epochs,
        drop_remainder=drop_remainder,
        name=f"{name}[{split}]",
    )


def batches_from_config(
    config: Any,
    batch_size: int,
    seed: int,
    *,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    download: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """`batches` for a DataConfig (or a ConfigDict / mapping accepted by `from_config`)."""
    config = from_config(config)
    return batches(
        config.name,
        config.split,
        batch_size,
        seed,
        image_size=config.image_size,
        data_dir=config.data_dir,
        shuffle=shuffle,
        num_epochs=num_epochs,
        drop_remainder=drop_remainder,
        download=download,
    )
