"""Data loaders: scikit-learn digits and TFDS image datasets (offline, no TensorFlow).

TFDS datasets are exercised two ways:
  * tiny real datasets written to a temporary data_dir as ArrayRecord by subclasses of the real
    TFDS builders (cifar10, lsun/bedroom) whose generators yield a few synthetic images as encoded
    PNG/JPEG bytes (encoding numpy images would need TensorFlow); reading them goes through the
    real `tfds.data_source`, so pixel values, labels and split sizes can be checked exactly;
  * `tfds.testing.mock_data` (MockPolicy.USE_CODE: the data_source path needs no TensorFlow) for
    the ImageNet and LSUN names, whose real builders cannot be prepared offline.
"""
import dataclasses
import io
import json
import shutil
import tempfile

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from conftest import fake_tfds_data_source
from ddss import data
from ddss.data import digits
from ddss.data import tfds as tfds_data



@pytest.fixture(scope="module", autouse=True)
def _contained_temp_dirs(tmp_path_factory):
    """tfds 4.9.10 leaks an empty mkdtemp('tfds') folder per builder of an unprepared dataset
    (DatasetInfo.initialize_from_bucket); keep those under pytest's temporary folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tempfile")))
        yield


# ----------------------------------------------------------------------------------------- digits


def test_digits_split_sizes_dtypes_and_range():
    for split, count in [("all", 1797), ("train", 1437), ("test", 360)]:
        images, labels = digits.load(split)
        assert images.shape == (count, 8, 8, 1) and images.dtype == np.float32
        assert labels.shape == (count,) and labels.dtype == np.int32
        assert images.min() == -1.0 and images.max() == 1.0
        steps = (images + 1.0) * 8.0  # back to the integer values 0..16
        np.testing.assert_array_equal(steps, np.round(steps))
        assert set(np.unique(labels)) == set(range(10))


def test_digits_values_match_sklearn():
    from sklearn.datasets import load_digits

    reference = load_digits()
    images, labels = digits.load("all")
    np.testing.assert_array_equal(images[..., 0], (reference.images / 8.0 - 1.0).astype(np.float32))
    np.testing.assert_array_equal(labels, reference.target)


def test_digits_train_test_split_rule():
    train, test = digits.split_indices("train"), digits.split_indices("test")
    assert len(np.intersect1d(train, test)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(1797))
    np.testing.assert_array_equal(test, np.sort(np.random.default_rng(0).permutation(1797)[:360]))
    all_images, all_labels = digits.load("all")
    test_images, test_labels = digits.load("test")
    np.testing.assert_array_equal(test_images, all_images[test])
    np.testing.assert_array_equal(test_labels, all_labels[test])


def test_digits_unknown_split_raises_at_call():
    with pytest.raises(ValueError, match="validation"):
        digits.load("validation")
    with pytest.raises(ValueError, match="validation"):
        digits.batches("validation", 8, seed=0)  # not deferred to the first next()


def test_digits_batches_follow_seeded_epoch_order():
    images, labels = digits.load("train")
    stream = digits.batches("train", 100, seed=5, num_epochs=2)
    got = list(stream)
    assert len(got) == 2 * (1437 // 100)
    for epoch in range(2):
        order = np.random.default_rng((5, epoch)).permutation(1437)
        for k in range(14):
            batch = got[epoch * 14 + k]
            chosen = order[k * 100 : (k + 1) * 100]
            assert batch["image"].shape == (100, 8, 8, 1) and batch["image"].dtype == np.float32
            np.testing.assert_array_equal(batch["image"], images[chosen])
            np.testing.assert_array_equal(batch["label"], labels[chosen])


def test_digits_batches_determinism_and_seed_dependence():
    first = [b["label"] for b in digits.batches("test", 50, seed=1, num_epochs=1)]
    again = [b["label"] for b in digits.batches("test", 50, seed=1, num_epochs=1)]
    other = [b["label"] for b in digits.batches("test", 50, seed=2, num_epochs=1)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(other))


def test_digits_batches_keep_remainder_when_asked():
    kept = list(digits.batches("test", 100, seed=0, num_epochs=1, drop_remainder=False))
    assert [len(b["label"]) for b in kept] == [100, 100, 100, 60]
    dropped = list(digits.batches("test", 100, seed=0, num_epochs=1))
    assert [len(b["label"]) for b in dropped] == [100, 100, 100]
    seen = np.concatenate([b["image"] for b in kept]).reshape(360, -1)
    expected = digits.load("test")[0].reshape(360, -1)
    assert sorted(map(bytes, seen)) == sorted(map(bytes, expected))  # every test image exactly once


def test_index_batches_rules():
    def sizes(**kw):
        return [len(b) for b in digits.index_batches(10, 4, 0, num_epochs=1, **kw)]

    assert sizes() == [4, 4]
    assert sizes(drop_remainder=False) == [4, 4, 2]
    in_order = list(digits.index_batches(10, 4, 0, shuffle=False, num_epochs=1, drop_remainder=False))
    np.testing.assert_array_equal(np.concatenate(in_order), np.arange(10))
    two = list(digits.index_batches(10, 10, 3, num_epochs=2))
    assert len(two) == 2 and not np.array_equal(two[0], two[1])
    for epoch in two:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(10))
    forever = digits.index_batches(3, 2, 0)
    assert len([next(forever) for _ in range(50)]) == 50
    for bad in [dict(batch_size=0), dict(batch_size=11)]:
        with pytest.raises(ValueError):
            digits.index_batches(10, seed=0, **bad)


# ----------------------------------------------------------- tiny real TFDS datasets (ArrayRecord)

CIFAR_TRAIN, CIFAR_TEST, LSUN_TRAIN = 11, 5, 7


def _encoded(image: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=image_format)
    return buffer.getvalue()


def _cifar_examples(count: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    return [(images[i], int(rng.integers(0, 10))) for i in range(count)]


def _lsun_images(count: int, seed: int):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*rng.integers(20, 60, size=2), 3), dtype=np.uint8) for _ in range(count)]


def _write_tiny_datasets(data_dir):
    """Prepares tiny 'cifar10' (train/test) and 'lsun/bedroom' (train) ArrayRecord datasets."""
    # Resolve (and so register) the real builders first: inside skip_registration their lazy
    # import would leave them unregistered.
    cifar10_cls, lsun_cls = tfds.builder_cls("cifar10"), tfds.builder_cls("lsun")
    with tfds.core.registered.skip_registration():

        class TinyCifar10(cifar10_cls):
            name = "cifar10"

            def _split_generators(self, dl_manager):
                return {
                    "train": self._generate_examples(CIFAR_TRAIN, 0),
                    "test": self._generate_examples(CIFAR_TEST, 1),
                }

            def _generate_examples(self, count, seed):
                for i, (image, label) in enumerate(_cifar_examples(count, seed)):
                    yield i, {"id": f"tiny_{i}", "image": _encoded(image, "PNG"), "label": label}

        class TinyLsun(lsun_cls):
            name = "lsun"

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples()}

            def _generate_examples(self):
                for i, image in enumerate(_lsun_images(LSUN_TRAIN, 2)):
                    yield i, {"id": f"tiny_{i}", "image": _encoded(image, "JPEG")}

    TinyCifar10(data_dir=data_dir, file_format="array_record").download_and_prepare()
    TinyLsun(config="bedroom", data_dir=data_dir, file_format="array_record").download_and_prepare()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tfds")
    _write_tiny_datasets(str(path))
    return str(path)


def _keyed(images, labels):
    """{image bytes: label} in model range, to check values and image–label pairs order-free."""
    return {tfds_data.to_model_range(image).tobytes(): label for image, label in zip(images, labels)}


def test_cifar_batches_values_labels_and_count(data_dir):
    expected = _keyed(*zip(*_cifar_examples(CIFAR_TRAIN, 0)))
    stream = tfds_data.batches("cifar10", "train", 4, 0, data_dir=data_dir, num_epochs=1, drop_remainder=False)
    got = list(stream)
    assert [len(b["image"]) for b in got] == [4, 4, 3]  # the last partial batch is kept
    seen = []
    for batch in got:
        assert batch["image"].dtype == np.float32 and batch["image"].shape[1:] == (32, 32, 3)
        assert batch["label"].dtype == np.int32
        assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
        for image, label in zip(batch["image"], batch["label"]):
            assert expected[image.tobytes()] == label  # exact pixels x/127.5 - 1, paired label
            seen.append(image.tobytes())
    assert len(seen) == CIFAR_TRAIN and set(seen) == set(expected)


def test_cifar_test_split_and_drop_remainder(data_dir):
    kept = list(tfds_data.batches("cifar10", "test", 2, 0, data_dir=data_dir, num_epochs=1, drop_remainder=False))
    assert sum(len(b["label"]) for b in kept) == CIFAR_TEST
    dropped = list(tfds_data.batches("cifar10", "test", 2, 0, data_dir=data_dir, num_epochs=1))
    assert [len(b["label"]) for b in dropped] == [2, 2]


def test_cifar_determinism_and_seed_dependence(data_dir):
    def epoch(seed):
        stream = tfds_data.batches("cifar10", "train", 11, seed, data_dir=data_dir, num_epochs=2)
        return [b["image"] for b in stream]

    first, again, other = epoch(3), epoch(3), epoch(4)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[0], first[1])  # epochs are reshuffled


def test_cifar_unshuffled_order_is_source_order(data_dir):
    source = tfds_data.open_source("cifar10", "train", data_dir=data_dir)
    assert len(source) == CIFAR_TRAIN
    stream = tfds_data.batches("cifar10", "train", 4, 0, data_dir=data_dir, shuffle=False, num_epochs=1,
                               drop_remainder=False)
    images = np.concatenate([b["image"] for b in stream])
    reference = np.stack([source[i]["image"] for i in range(CIFAR_TRAIN)])
    np.testing.assert_array_equal(images, tfds_data.to_model_range(reference))


def test_cifar_image_size(data_dir):
    small = next(tfds_data.batches("cifar10", "train", 3, 0, data_dir=data_dir, image_size=16))
    assert small["image"].shape == (3, 16, 16, 3) and small["image"].dtype == np.float32
    native = next(tfds_data.batches("cifar10", "train", 3, 0, data_dir=data_dir))
    resized = [tfds_data.center_crop_resize(np.round((x + 1) * 127.5).astype(np.uint8), 16) for x in native["image"]]
    np.testing.assert_array_equal(small["image"], tfds_data.to_model_range(np.stack(resized)))
    same = next(tfds_data.batches("cifar10", "train", 3, 0, data_dir=data_dir, image_size=32, resize=False))
    np.testing.assert_array_equal(same["image"], native["image"])
    with pytest.raises(ValueError, match="image_size=16"):
        next(tfds_data.batches("cifar10", "train", 3, 0, data_dir=data_dir, image_size=16, resize=False))


def test_lsun_needs_image_size_and_resizes(data_dir):
    native = tfds_data.batches("lsun/bedroom", "train", 3, 0, data_dir=data_dir)
    with pytest.raises(ValueError, match="image_size"):
        next(native)  # the tiny LSUN images all differ in size
    stream = tfds_data.batches("lsun/bedroom", "train", 3, 0, data_dir=data_dir, image_size=24, num_epochs=1,
                               drop_remainder=False)
    got = list(stream)
    assert [b["image"].shape for b in got] == [(3, 24, 24, 3), (3, 24, 24, 3), (1, 24, 24, 3)]
    assert all(set(b) == {"image"} for b in got)  # LSUN has no labels
    assert all(-1.0 <= b["image"].min() and b["image"].max() <= 1.0 for b in got)


def test_not_prepared_error_names_dataset_dir_and_fix(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(tfds_data.DatasetNotPreparedError) as info:
        tfds_data.batches("cifar10", "train", 4, 0, data_dir=str(empty))  # raised at the call
    message = str(info.value)
    for needed in ["'cifar10'", str(empty), "tfds build cifar10", "array_record", "download_and_prepare()"]:
        assert needed in message
    assert list(empty.iterdir()) == []  # nothing was downloaded or written
    assert isinstance(info.value, FileNotFoundError)


def test_tfrecord_prepared_dataset_gets_conversion_hint(data_dir, tmp_path):
    copy = tmp_path / "tfrecord"
    shutil.copytree(f"{data_dir}/cifar10", copy / "cifar10")
    info_file = copy / "cifar10" / "3.0.2" / "dataset_info.json"
    info = json.loads(info_file.read_text())
    info["fileFormat"] = "tfrecord"
    info_file.write_text(json.dumps(info))
    with pytest.raises(tfds_data.DatasetNotPreparedError, match="convert_format"):
        tfds_data.open_source("cifar10", "train", data_dir=str(copy))


def test_unknown_split_of_prepared_dataset_is_not_reported_as_unprepared(data_dir):
    with pytest.raises(Exception) as info:
        tfds_data.open_source("cifar10", "validation", data_dir=data_dir)
    assert not isinstance(info.value, tfds_data.DatasetNotPreparedError)


def test_unknown_names_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="mnist"):
        tfds_data.batches("mnist", "train", 4, 0, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not_a_category.*church_outdoor"):
        tfds_data.check_name("lsun/not_a_category")
    tfds_data.check_name("cifar10:3.0.2")
    tfds_data.check_name("lsun/church_outdoor")
    with pytest.raises(ValueError, match="image_size"):
        tfds_data.batches("cifar10", "train", 4, 0, image_size=0, data_dir=str(tmp_path))


def test_wrong_channels_or_dtype_raise():
    gray = [{"image": np.zeros((8, 8, 1), np.uint8)}] * 4
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        next(tfds_data.batches_from_source(gray, 2, 0))
    flat = [{"image": np.zeros((8, 8), np.uint8)}] * 4
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        next(tfds_data.batches_from_source(flat, 2, 0))
    floats = [{"image": np.zeros((8, 8, 3), np.float32)}] * 4
    with pytest.raises(ValueError, match="uint8"):
        next(tfds_data.batches_from_source(floats, 2, 0))


def test_batches_from_source_follow_index_batches():
    source = [{"image": np.full((4, 4, 3), i, np.uint8), "label": i} for i in range(9)]
    stream = tfds_data.batches_from_source(source, 4, 11, num_epochs=2, drop_remainder=False)
    order = digits.index_batches(9, 4, 11, num_epochs=2, drop_remainder=False)
    for batch, indices in zip(stream, order, strict=True):
        np.testing.assert_array_equal(batch["label"], indices)
        np.testing.assert_array_equal(batch["image"][:, 0, 0, 0], indices.astype(np.float32) / np.float32(127.5) - 1)


def test_size_change_between_batches_raises():
    source = [{"image": np.zeros((8, 8, 3), np.uint8)}] * 2 + [{"image": np.zeros((6, 6, 3), np.uint8)}] * 2
    stream = tfds_data.batches_from_source(source, 2, 0, shuffle=False)
    next(stream)
    with pytest.raises(ValueError, match="differ in size"):
        next(stream)


def test_center_crop_resize_keeps_only_the_center():
    image = np.zeros((6, 10, 3), np.uint8)
    image[:, 2:8] = 200  # the central 6×6 square; the 2-column borders must be cropped away
    out = tfds_data.center_crop_resize(image, 3)
    assert out.shape == (3, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, 200)
    tall = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3)
    np.testing.assert_array_equal(tfds_data.center_crop_resize(tall, 3), tall[1:4])


def test_to_model_range_endpoints():
    np.testing.assert_array_equal(tfds_data.to_model_range(np.array([0, 255], np.uint8)), [-1.0, 1.0])
    assert tfds_data.to_model_range(np.array([0], np.uint8)).dtype == np.float32


# -------------------------------------------------------------------- configs and public package API


def test_config_roundtrip_and_batches(data_dir):
    ml_collections = pytest.importorskip("ml_collections")
    cfg = ml_collections.ConfigDict({"name": "cifar10", "split": "test", "image_size": 16, "data_dir": data_dir})
    config = tfds_data.from_config(cfg)
    assert config == tfds_data.DataConfig("cifar10", "test", 16, data_dir)
    assert tfds_data.from_config(dataclasses.asdict(config)) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.split = "train"
    with pytest.raises(ValueError, match="imgsize"):
        tfds_data.from_config({"name": "cifar10", "imgsize": 16})
    with pytest.raises(ValueError, match="mnist"):
        tfds_data.DataConfig("mnist")
    from_cfg = list(tfds_data.batches_from_config(cfg, 2, 7, num_epochs=1, drop_remainder=False))
    direct = list(tfds_data.batches("cifar10", "test", 2, 7, image_size=16, data_dir=data_dir, num_epochs=1,
                                    drop_remainder=False))
    assert len(from_cfg) == len(direct) == 3
    for a, b in zip(from_cfg, direct):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_package_exports():
    for exported in data.__all__:
        assert hasattr(data, exported), exported
    assert data.tfds_batches is tfds_data.batches and data.digits_batches is digits.batches


# ------------------------------------------------------------------------ tfds.testing.mock_data

@pytest.mark.parametrize(
    "name, image_size, shape, has_label",
    [
        ("cifar10", None, (32, 32, 3), True),
        ("imagenet_resized/64x64", None, (64, 64, 3), True),
        ("downsampled_imagenet/64x64", 64, (64, 64, 3), False),  # mock images have random sizes
        ("lsun/church_outdoor", 32, (32, 32, 3), False),
    ],
)
def test_mock_data_all_supported_families(tmp_path, name, image_size, shape, has_label):
    def read(seed):
        with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=fake_tfds_data_source):
            stream = tfds_data.batches(name, "train", 4, seed, image_size=image_size, data_dir=str(tmp_path),
                                       num_epochs=1, drop_remainder=False)
            return list(stream)

    got = read(0)
    assert [len(b["image"]) for b in got] == [4, 4, 2]
    for batch in got:
        assert batch["image"].shape[1:] == shape and batch["image"].dtype == np.float32
        assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
        assert ("label" in batch) == has_label
        if has_label:
            assert batch["label"].dtype == np.int32 and batch["label"].min() >= 0
    again, other = read(0), read(1)
    for a, b in zip(got, again):
        np.testing.assert_array_equal(a["image"], b["image"])
    assert not all(np.array_equal(a["image"], b["image"]) for a, b in zip(got, other))


def test_default_mock_data_source_reads_single_items(tmp_path):
    """With the default mock, `tfds.data_source` works without TensorFlow for single items."""
    with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
        source = tfds_data.open_source("cifar10", "train", data_dir=str(tmp_path))
        assert len(source) == 6
        assert source[0]["image"].shape == (32, 32, 3) and source[0]["image"].dtype == np.uint8
        items = [source[i] for i in range(6)]
        stream = tfds_data.batches_from_source(items, 4, 0, num_epochs=1, drop_remainder=False)
        assert [len(b["label"]) for b in stream] == [4, 2]
