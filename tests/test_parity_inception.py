"""Our Flax FID Inception against pytorch-fid's InceptionV3 (torch), same random weights in the .pth layout."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import relative_error, require
from ddss.metrics import features, inception
from ddss.models.params_io import WeightFileError

sys.path.insert(0, os.path.dirname(__file__))
from torch_reference import random_fid_inception  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    torch = require("torch")
    model, state, net = random_fid_inception(seed=0, output_blocks=(0, 1, 2, 3))
    return torch, model, state, net, inception.params_from_torch(state)


def _torch_outputs(torch, model, net, images01):
    with torch.no_grad():
        blocks = model(torch.from_numpy(images01))
        pool = blocks[3].flatten(1)
        return {"pool_64": blocks[0].mean((2, 3)).numpy(), "pool_192": blocks[1].mean((2, 3)).numpy(),
                "pool_768": blocks[2].mean((2, 3)).numpy(), "pool": pool.numpy(), "logits": net.fc(pool).numpy(),
                "logits_unbiased": (pool @ net.fc.weight.T).numpy()}


@pytest.mark.parametrize("size", [(32, 32), (64, 64), (299, 299), (341, 341), (48, 80)])
def test_features_and_logits_match_pytorch_fid(reference, size):
    torch, model, _, net, params = reference
    images01 = np.random.default_rng(sum(size)).uniform(0, 1, (2, 3) + size).astype(np.float32)
    want = _torch_outputs(torch, model, net, images01)
    got = inception.apply(params, jnp.asarray(images01.transpose(0, 2, 3, 1) * 2 - 1), inception.OUTPUTS)
    for name in inception.OUTPUTS:
        assert got[name].shape == want[name].shape
        assert relative_error(got[name], want[name]) <= 1e-4, name
    # the random network is not degenerate: features differ between the two images
    assert relative_error(want["pool"][0], want["pool"][1]) > 1e-2


def test_gradient_matches_torch_autograd(reference):
    """Input gradients of a random projection of the pool features, in float64 on both sides.

    In float32 the two libraries' convolutions round differently in the last bits, which flips the
    argmax of a few near-tied max-pool windows and routes those windows' gradient to a different
    pixel: both are valid gradients, not elementwise comparable (relative difference ~5e-3). In float64
    no argmax flips, and the backward passes must agree elementwise.
    """
    torch, model, _, _, params = reference
    images01 = np.random.default_rng(1).uniform(0, 1, (1, 3, 40, 56))
    direction = np.random.default_rng(2).normal(size=(1, 2048))
    x = torch.from_numpy(images01).requires_grad_(True)
    (model.double()(x)[3].flatten(1) * torch.from_numpy(direction)).sum().backward()
    model.float()
    want = x.grad.numpy().transpose(0, 2, 3, 1) / 2  # d/d(2x-1) = d/dx / 2
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        grad = jax.grad(lambda im: (inception.apply(p64, im)["pool"] * direction).sum())
        got = np.asarray(grad(jnp.asarray(images01.transpose(0, 2, 3, 1) * 2 - 1)))
    assert got.dtype == np.float64
    assert relative_error(got, want) <= 1e-6  # measured 3e-15; one flipped max-pool window gives ~1e-3


@pytest.mark.parametrize("shape", [(8, 8), (32, 17), (299, 299), (420, 512)])
def test_resize_matches_torch_interpolate(shape):
    torch = require("torch")
    x = np.random.default_rng(0).normal(size=(2, 3) + shape).astype(np.float32)
    want = torch.nn.functional.interpolate(torch.from_numpy(x), size=(299, 299), mode="bilinear",
                                           align_corners=False).numpy().transpose(0, 2, 3, 1)
    got = inception.resize_bilinear(jnp.asarray(x.transpose(0, 2, 3, 1)))
    # float32 rounding of the interpolation weights only (torch computes them in float32): ~1e-7.
    # align_corners=True or antialiasing would be off by 1e-2 or more.
    assert relative_error(got, want) <= 1e-6


def test_pth_round_trip_and_conversion(reference, tmp_path):
    torch, _, state, _, params = reference
    pth = str(tmp_path / "random_inception.pth")
    torch.save(state, pth)
    loaded = inception.load_params(pth, check_hash=False)
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(loaded)[0], jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b, err_msg=str(path))
    # torch-free copies: safetensors (CLI) and npz
    out = str(tmp_path / "converted.safetensors")
    inception._main(["convert", pth, out, "--no-check-hash"])
    inception.convert(pth, str(tmp_path / "converted.npz"), check_hash=False)
    for path in (out, str(tmp_path / "converted.npz")):
        for a, b in zip(jax.tree_util.tree_leaves(inception.load_params(path)), jax.tree_util.tree_leaves(params)):
            np.testing.assert_array_equal(a, b)
    # the default search path finds $DDSS_INCEPTION_WEIGHTS first
    os.environ[inception.ENV_VAR] = out
    try:
        assert inception.default_paths()[0] == out
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, inception.load_params(), params))
    finally:
        del os.environ[inception.ENV_VAR]


def test_hash_check_rejects_other_weights(reference, tmp_path):
    torch, _, state, _, _ = reference
    pth = str(tmp_path / inception.PTH_NAME)
    torch.save(state, pth)
    with pytest.raises(WeightFileError, match="sha256.*6726825d"):
        inception.load_params(pth)


def test_missing_and_corrupt_weight_files(tmp_path, monkeypatch):
    monkeypatch.delenv(inception.ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightFileError, match=r"No Inception weights found.*pt_inception-2015-12-05-6726825d\.pth"):
        inception.load_params()
    with pytest.raises(WeightFileError, match="not found.*github.com/mseitzer/pytorch-fid"):
        inception.load_params(str(tmp_path / "absent.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(WeightFileError, match="could not be read"):
        inception.load_params(str(bad), check_hash=False)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 20)
    with pytest.raises(WeightFileError, match="corrupt"):
        inception.load_params(str(bad_st))
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(WeightFileError, match="corrupt or not an .npz"):
        inception.load_params(str(bad_npz))
    np.savez(tmp_path / "other.npz", w=np.zeros(3))
    with pytest.raises(WeightFileError, match="unexpected: \\['w'\\]"):
        inception.load_params(str(tmp_path / "other.npz"))


def test_state_dict_with_wrong_shapes_is_rejected(reference):
    _, _, state, _, _ = reference
    broken = dict(state)
    broken["Mixed_6b.branch1x1.conv.weight"] = broken["Mixed_6b.branch1x1.conv.weight"][:10]
    del broken["fc.bias"]
    with pytest.raises(WeightFileError, match=r"missing: \['fc_bias'\].*shape mismatch.*Mixed_6b/branch1x1/kernel"):
        inception.params_from_torch(broken)


def test_feature_extractor_batches_match_one_call(reference):
    params = reference[4]
    extractor = features.inception_extractor(params=params, batch_size=3)
    images = np.random.default_rng(3).uniform(-1, 1, (7, 16, 16, 3)).astype(np.float32)
    direct = np.asarray(inception.apply(params, jnp.asarray(images))["pool"])
    batched = extractor.features(images)
    assert batched.shape == (7, 2048) and batched.dtype == np.float64
    # Jitted batches of 3 against one eager call: float32 round-off of a deep network, which depends on
    # the batch shape and the weights (measured ≤ 4e-7·max|f|); padding or ordering bugs give O(max|f|).
    np.testing.assert_allclose(batched, direct, rtol=0, atol=1e-5 * np.abs(direct).max())
    logits = extractor.logits_numpy(images)
    want_logits = direct @ np.asarray(params["fc_kernel"])
    np.testing.assert_allclose(logits, want_logits, rtol=0, atol=1e-5 * np.abs(want_logits).max())
