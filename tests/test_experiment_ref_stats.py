"""The ref_stats experiment: digits, image folders and TFDS; exact resume after a kill; bad input.

Statistics are checked against numpy's mean and `numpy.cov` (pytorch-fid's convention: unbiased,
rowvar=False) of the same extractor's features computed in one go.
"""
import json
import os

import numpy as np
import pytest
from PIL import Image

from ddss.configs import ref_stats_digits, ref_stats_folder, ref_stats_npz
from ddss import experiments
from ddss.data import digits as digits_data
from ddss.experiments import ref_stats
from ddss.metrics import features, stats
from ddss.models import digits as digits_model


def _numpy_stats(feats):
    feats = np.asarray(feats, np.float64)
    return feats.mean(0), np.cov(feats, rowvar=False)


def _folder_config(folder, **overrides):
    config = ref_stats_folder.get_config()
    config.folder = str(folder)
    config.features = features_config = ref_stats_digits.get_config().features
    features_config.batch_size = 3
    config.batch_size = 3
    for k, v in overrides.items():
        config[k] = v
    return config


def _write_digit_pngs(folder, count, seed=0, size=8):
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(seed).integers(0, 256, (count, size, size), dtype=np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image, mode="L").save(folder / f"{i:03d}.png")
    return images


@pytest.mark.parametrize("split", ["all", "train"])
def test_digits_statistics_match_numpy_and_the_shipped_files(tmp_path, split):
    config = ref_stats_digits.get_config()
    config.split = split
    config.batch_size = 500  # 1797 = 3 × 500 + 297: the last, short batch counts
    config.save_features = True
    result = experiments.run(config, str(tmp_path))
    mu, sigma, info = stats.load(result["stats"], dim=64)
    images = digits_data.load(split)[0]
    assert info["num_samples"] == len(images) and info["source"] == "digits" and info["split"] == split
    # The formula: numpy's statistics of the run's own features (float64 sums on the same arrays: tight).
    feats = np.load(tmp_path / "features.npy")
    want_mu, want_sigma = _numpy_stats(feats)
    np.testing.assert_allclose(mu, want_mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sigma, want_sigma, rtol=1e-10, atol=1e-12)
    # The features, separately: the same network in one batch layout against the run's layout. float32
    # round-off differs with the batch shape (XLA picks other kernels): measured ≤ 5e-7·max|f| here;
    # 1e-5·max|f| leaves room for other builds, while a wrong image or order differs by O(max|f|).
    one_call = features.get("digits").features(images)
    np.testing.assert_allclose(feats, one_call, rtol=0, atol=1e-5 * np.abs(one_call).max())
    # The committed assets are this experiment's output for the shipped classifier, computed on another
    # machine: equal up to that float32 round-off δ ≲ 1e-7·max|f|, which moves each Σ_ij by at most
    # ~2δ·max|f|·mean|f| and each μ_i by δ: the bounds below are ~10× that, and a changed network
    # moves them by O(1).
    shipped_mu, shipped_sigma = digits_model.reference_stats(split)
    np.testing.assert_allclose(shipped_mu, mu, rtol=0, atol=1e-6 * np.abs(mu).max())
    np.testing.assert_allclose(shipped_sigma, sigma, rtol=0, atol=1e-6 * np.abs(sigma).max())
    assert not os.path.exists(tmp_path / "partial.npz")
    assert json.loads((tmp_path / "info.json").read_text())["num_samples"] == len(images)


def test_folder_statistics_and_features_match_numpy(tmp_path):
    pixels = _write_digit_pngs(tmp_path / "images", 7)
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    result = experiments.run(_folder_config(tmp_path / "images", save_features=True), str(tmp_path / "work"))
    want_feats = features.get("digits").features(pixels[..., None].astype(np.float32) / 127.5 - 1.0)
    got_feats = np.load(tmp_path / "work" / "features.npy")
    assert got_feats.shape == (7, 64) and got_feats.dtype == np.float32
    # Another batch layout (one batch of 7 against the run's 3, 3, 1): float32 round-off only, measured
    # ≤ 5e-7·max|f|; a misread, reordered or differently scaled image differs by O(max|f|).
    np.testing.assert_allclose(got_feats, want_feats, rtol=0, atol=1e-5 * np.abs(want_feats).max())
    mu, sigma, info = stats.load(result["stats"])
    # The statistics are numpy's of the run's own features (float64 sums: tight); comparing them with
    # features computed again in another batch layout would test float32 rounding of the network instead.
    want_mu, want_sigma = _numpy_stats(got_feats)
    np.testing.assert_allclose(mu, want_mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sigma, want_sigma, rtol=1e-9, atol=1e-12)
    assert info["num_samples"] == 7 and info["source"] == "folder"
    # pytorch-fid reads the file as it reads its own --save-stats output.
    with np.load(result["stats"]) as f:
        assert f["mu"].dtype == np.float64 and f["sigma"].shape == (64, 64)


def test_folder_image_size_center_crops_and_resizes(tmp_path):
    _write_digit_pngs(tmp_path / "images", 4, size=8)
    Image.fromarray(np.zeros((16, 12), np.uint8), mode="L").save(tmp_path / "images" / "big.png")
    with pytest.raises(ValueError, match="differ in size.*--config.image_size=N"):
        experiments.run(_folder_config(tmp_path / "images"), str(tmp_path / "a"))
    result = experiments.run(_folder_config(tmp_path / "images", image_size=8), str(tmp_path / "b"))
    assert result["num_samples"] == 5


def _run_killed_at_read(monkeypatch, config, workdir, at_call: int):
    """Runs `config` with the process 'killed' (KeyboardInterrupt) at the `at_call`-th batch read."""
    real_read, calls = ref_stats.read_images, []

    def dying_read(*args, **kwargs):
        calls.append(1)
        if len(calls) == at_call:
            raise KeyboardInterrupt("killed")
        return real_read(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(ref_stats, "read_images", dying_read)
        with pytest.raises(KeyboardInterrupt):
            experiments.run(config, workdir)


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    _write_digit_pngs(tmp_path / "images", 11, seed=1)
    config = _folder_config(tmp_path / "images", batch_size=2, checkpoint_every=2, save_features=True)
    config.features.batch_size = 2
    experiments.run(config, str(tmp_path / "whole"))

    _run_killed_at_read(monkeypatch, config, str(tmp_path / "killed"), 5)
    with np.load(tmp_path / "killed" / "partial.npz") as f:
        assert int(f["done"]) == 8  # checkpoints after batches 2 and 4; batch 5 was lost
    resumed = experiments.run(config, str(tmp_path / "killed"))
    assert resumed["num_samples"] == 11 and not os.path.exists(tmp_path / "killed" / "partial.npz")
    for name in ("mu", "sigma"):
        np.testing.assert_array_equal(np.load(tmp_path / "killed" / "stats.npz")[name],
                                      np.load(tmp_path / "whole" / "stats.npz")[name])
    np.testing.assert_array_equal(np.load(tmp_path / "killed" / "features.npy"),
                                  np.load(tmp_path / "whole" / "features.npy"))


def test_a_partial_file_of_another_run_is_not_mixed_in(tmp_path, monkeypatch):
    _write_digit_pngs(tmp_path / "images", 6)
    config = _folder_config(tmp_path / "images", batch_size=2, checkpoint_every=1)
    config.features.batch_size = 2
    _run_killed_at_read(monkeypatch, config, str(tmp_path / "work"), 2)
    other = _folder_config(tmp_path / "images", batch_size=2, checkpoint_every=1, image_size=8)
    with pytest.raises(ValueError, match=r"work holds a run with a different configuration \(features.batch_size: 2 → 3; "
                                         r"image_size: null → 8\)"):
        experiments.run(other, str(tmp_path / "work"))


def test_bad_sources_say_what_to_do(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images.*empty"):
        experiments.run(_folder_config(tmp_path / "empty"), str(tmp_path / "a"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        experiments.run(_folder_config(tmp_path / "nowhere"), str(tmp_path / "b"))
    with pytest.raises(ValueError, match="config.folder is not set"):
        experiments.run(_folder_config(""), str(tmp_path / "c"))
    config = ref_stats_digits.get_config()
    config.source = "webdataset"
    with pytest.raises(ValueError, match="Unknown source 'webdataset'.*'tfds', 'folder', 'digits'"):
        experiments.run(config, str(tmp_path / "d"))
    _write_digit_pngs(tmp_path / "one", 1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        experiments.run(_folder_config(tmp_path / "one"), str(tmp_path / "e"))


def test_an_openai_reference_batch_reads_without_pickle(tmp_path):
    """source='npz': arr_0's uint8 images, their features and statistics as for the same pixels in a
    folder of PNGs; a batch that needs pickle, or holds no arr_0, is refused by name."""
    pixels = _write_digit_pngs(tmp_path / "images", 7, seed=3)
    np.savez(tmp_path / "batch.npz", arr_0=pixels[..., None], arr_1=np.arange(7))  # labels beside, as openai's
    config = _folder_config(tmp_path / "images", save_features=True)
    del config["folder"]
    config.source, config.npz = "npz", str(tmp_path / "batch.npz")
    got = experiments.run(config, str(tmp_path / "npz"))
    want = experiments.run(_folder_config(tmp_path / "images", save_features=True), str(tmp_path / "folder"))
    np.testing.assert_array_equal(np.load(tmp_path / "npz" / "features.npy"),
                                  np.load(tmp_path / "folder" / "features.npy"))
    assert got["num_samples"] == 7 and got["info"]["source"] == "npz"
    for a, b in zip(stats.load(got["stats"], dim=64)[:2], stats.load(want["stats"], dim=64)[:2]):
        np.testing.assert_array_equal(a, b)
    assert set(ref_stats_npz.get_config().keys()) - {"npz"} == set(ref_stats_folder.get_config().keys()) - {"folder"}
    np.savez(tmp_path / "objects.npz", arr_0=np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "other.npz", images=pixels)
    for name, message in (("objects.npz", "cannot be read without pickle"), ("other.npz", "has no arr_0"),
                          ("missing.npz", "does not exist")):
        config.npz = str(tmp_path / name)
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            experiments.run(config, str(tmp_path / name.replace(".", "_")))
