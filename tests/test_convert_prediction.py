"""What a converted checkpoint predicts, against diffusers: v- and x₀-prediction, learned variance,
and Inception weights other than pytorch-fid's file.

A tiny random diffusers `UNet2DModel` is saved with a `DDIMScheduler` config of the given
`prediction_type`; the reference is diffusers' own `DDIMScheduler.step` on diffusers' own network
output, so the conversion to ε is checked against code we did not write.
"""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import random_inception_params, relative_error, require
from ddss.configs import cifar10_ddpm
from ddss.metrics import features, inception
from ddss.models import convert, params_io, pretrained
from ddss.samplers import ddim
from test_parity_unet import VARIANT_CONFIG, _diffusers_model, _save, _torch_out, _torch_skip

torch = require("torch")
diffusers = require("diffusers")

TOL = 2e-4
BATCH = 2


def _scheduler(prediction_type: str, **kwargs):
    return diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
                                   clip_sample=False, set_alpha_to_one=True, prediction_type=prediction_type,
                                   **kwargs)


def _checkpoint(tmp_path, prediction_type: str, layout: str, config=VARIANT_CONFIG, seed: int = 0):
    """A diffusers UNet saved as diffusers writes it: a UNet repository (scheduler_config.json beside
    config.json), a pipeline (unet/ and scheduler/), or a bare UNet without any scheduler config."""
    theirs = _diffusers_model(config, seed)
    scheduler = _scheduler(prediction_type)
    if layout == "repository":
        _save(theirs, tmp_path)
        scheduler.save_pretrained(str(tmp_path))
    elif layout == "pipeline":
        _save(theirs, tmp_path / "unet")
        scheduler.save_pretrained(str(tmp_path / "scheduler"))
    else:
        _save(theirs, tmp_path)
    return theirs, scheduler, str(tmp_path)


def _x(config, seed: int = 0) -> np.ndarray:
    s, c = config["sample_size"], config["in_channels"]
    return np.random.default_rng(seed).standard_normal((BATCH, s, s, c)).astype(np.float32)


def _diffusers_ddim(unet, scheduler, x: np.ndarray, timesteps) -> np.ndarray:
    """diffusers' DDIM (η = 0) driven by diffusers' network output, NHWC in and out."""
    sample = torch.from_numpy(x.transpose(0, 3, 1, 2))
    with torch.no_grad():
        for t in timesteps:
            out = unet(sample, torch.full((x.shape[0],), int(t))).sample
            sample = scheduler.step(out, int(t), sample, eta=0.0).prev_sample
    return sample.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("prediction_type,layout", [("v_prediction", "repository"), ("sample", "pipeline"),
                                                    ("v_prediction", "argument")])
def test_ddim_step_matches_diffusers_scheduler(tmp_path, prediction_type, layout):
    theirs, scheduler, directory = _checkpoint(tmp_path, prediction_type, layout)
    ours = convert.load_diffusers(directory, prediction_type=prediction_type if layout == "argument" else None)
    assert ours.prediction == convert.PREDICTION_TYPES[prediction_type]
    assert ours.metadata["prediction_type"] == prediction_type
    x = _x(VARIANT_CONFIG)
    eps_fn = jax.jit(ours.eps_fn)

    # One step from x_t at t = 600 to the clean image (ᾱ_prev = 1): diffusers' step with one inference step.
    scheduler.set_timesteps(1)
    expected = _diffusers_ddim(theirs, scheduler, x, [600])
    got = ddim.sample(ddim.init(ours.schedule, [600.0]), eps_fn, jnp.asarray(x), jax.random.key(0))
    assert relative_error(got, expected) <= TOL

    # The whole deterministic chain on diffusers' own timesteps (666, 333, 0).
    scheduler.set_timesteps(3)
    expected = _diffusers_ddim(theirs, scheduler, x, scheduler.timesteps.numpy())
    got = ddim.sample(ddim.init(ours.schedule, scheduler.timesteps.numpy()), eps_fn, jnp.asarray(x),
                      jax.random.key(0))
    assert relative_error(got, expected) <= TOL

    # Read as ε-prediction, the same network gives another step: the test sees the conversion.
    as_eps = convert.load_diffusers(directory, prediction_type="epsilon")
    wrong = ddim.sample(ddim.init(as_eps.schedule, scheduler.timesteps.numpy()), jax.jit(as_eps.eps_fn),
                        jnp.asarray(x), jax.random.key(0))
    assert relative_error(wrong, expected) > 100 * TOL


def test_prediction_survives_the_weight_file(tmp_path):
    """`python -m ddss.models.convert DIR OUT` records what the network predicts; `pretrained.load` reads it."""
    _, _, directory = _checkpoint(tmp_path / "ckpt", "v_prediction", "repository", seed=1)
    out = str(tmp_path / "unet.safetensors")
    convert.main(["convert", directory, out])
    assert pretrained.load(out).prediction == "v"
    # The written kernels are the converted ones (transposed views are stored in index order).
    x, t = _x(VARIANT_CONFIG, seed=1), np.array([250.0, 750.0], np.float32)
    np.testing.assert_array_equal(np.asarray(pretrained.load(out).model_output(x, t)),
                                  np.asarray(convert.load_diffusers(directory).model_output(x, t)))
    convert.main(["convert", directory, out, "sample"])
    assert pretrained.load(out).prediction == "x0"


def test_skipping_applies_to_the_converted_prediction(tmp_path):
    """eps_fn of a v-prediction model with a traced mask or a static skip list is the adapter applied to the
    network's output with those blocks removed (diffusers' network with those blocks replaced)."""
    theirs, _, directory = _checkpoint(tmp_path, "v_prediction", "repository", seed=2)
    ours = convert.load_diffusers(directory)
    which = (1, 4)
    _torch_skip(theirs, VARIANT_CONFIG, [ours.blocks[i] for i in which])
    x, t = _x(VARIANT_CONFIG, seed=2), np.array([250.0, 750.0], np.float32)
    v = _torch_out(theirs, x, t)
    alpha_bar = _scheduler("v_prediction").alphas_cumprod.numpy()[t.astype(int)][:, None, None, None]
    expected = np.sqrt(1 - alpha_bar) * x + np.sqrt(alpha_bar) * v
    mask = np.zeros(ours.num_blocks, bool)
    mask[list(which)] = True
    masked = jax.jit(lambda p, m: pretrained.eps_fn(ours, p, skip_mask=m)(x, t))(ours.params, mask)
    static = jax.jit(lambda x, t: ours.eps_fn(x, t, skip=which))(x, t)
    assert relative_error(masked, expected) <= TOL
    assert relative_error(static, expected) <= TOL


def _config_only(tmp_path, **changes) -> str:
    (tmp_path / "config.json").write_text(json.dumps({**VARIANT_CONFIG, **changes}))
    return str(tmp_path)


@pytest.mark.parametrize("where", ["scheduler", "argument"])
def test_unknown_prediction_type_is_one_clear_error(tmp_path, where):
    directory = _config_only(tmp_path)
    if where == "scheduler":
        (tmp_path / "scheduler_config.json").write_text(json.dumps({"prediction_type": "flow"}))
        with pytest.raises(ValueError, match=r"prediction_type 'flow' \(from .*scheduler_config.json\) is not "
                                             r"supported.*'v_prediction'.*prediction_type=") as err:
            convert.load_diffusers(directory)
    else:
        with pytest.raises(ValueError, match=r"prediction_type 'eps' \(the prediction_type argument\)") as err:
            convert.load_diffusers(directory, prediction_type="eps")
    assert "\n" not in str(err.value)


def test_output_channels_other_than_c_or_2c_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"out_channels=4 with in_channels=3.*3 channels.*or 6"):
        convert.load_diffusers(_config_only(tmp_path, out_channels=4))


def test_learned_variance_splits_the_output(tmp_path):
    config = {**VARIANT_CONFIG, "out_channels": 6}
    theirs = _diffusers_model(config, seed=3)
    _save(theirs, tmp_path)
    diffusers.DDPMScheduler(beta_schedule="linear", variance_type="learned_range").save_pretrained(str(tmp_path))
    with pytest.warns(UserWarning, match=r"out_channels=6 = 2×in_channels \(learned variance\).*first 3 channels"):
        ours = convert.load_diffusers(str(tmp_path))
    assert ours.learned_variance and ours.metadata["variance_type"] == "learned_range"
    assert ours.image_shape == (16, 16, 3)
    x, t = _x(config, seed=3), np.array([10.0, 900.0], np.float32)
    full = _torch_out(theirs, x, t)
    eps = jax.jit(ours.eps_fn)(x, t)
    assert eps.shape == x.shape
    assert relative_error(eps, full[..., :3]) <= TOL
    assert relative_error(jax.jit(ours.variance_fn)(x, t), full[..., 3:]) <= TOL
    assert relative_error(ours.model_output(x, t), full) <= TOL
    # skippable blocks: the first three channels of diffusers' network with those blocks removed
    which = (0, 5)
    _torch_skip(theirs, config, [ours.blocks[i] for i in which])
    skipped = _torch_out(theirs, x, t)
    mask = np.zeros(ours.num_blocks, bool)
    mask[list(which)] = True
    masked = jax.jit(lambda p, m: pretrained.eps_fn(ours, p, skip_mask=m)(x, t))(ours.params, mask)
    assert relative_error(masked, skipped[..., :3]) <= TOL
    assert relative_error(jax.jit(lambda x: ours.variance_fn(x, t, skip=which))(x), skipped[..., 3:]) <= TOL
    # an ε-only model has no variance channels
    plain = convert.load_diffusers(_checkpoint(tmp_path / "plain", "epsilon", "repository", seed=4)[2])
    assert not plain.learned_variance
    with pytest.raises(ValueError, match="learned no variance"):
        plain.variance_fn(x, t)


# ---------------------------------------------------------------------------------------------
# Inception weights other than pytorch-fid's file
# ---------------------------------------------------------------------------------------------

_BN = {"bn_scale": "weight", "bn_bias": "bias", "bn_mean": "running_mean", "bn_var": "running_var"}


def _pth_state(params) -> dict:
    """Our Inception parameters in pytorch-fid's .pth layout (the inverse of `inception.params_from_torch`)."""
    state = {}
    for key, value in params_io.flatten(params).items():
        prefix, _, leaf = key.rpartition("/")
        module = prefix.replace("/", ".")
        if key == "fc_kernel":
            name, value = "fc.weight", value.T
        elif key == "fc_bias":
            name = "fc.bias"
        elif leaf == "kernel":
            name, value = f"{module}.conv.weight", value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        else:
            name = f"{module}.bn.{_BN[leaf]}"
        state[name] = torch.from_numpy(np.ascontiguousarray(value))
    return state


@pytest.fixture(scope="module")
def other_inception(tmp_path_factory):
    """A .pth of the FID Inception's architecture that is not pytorch-fid's file (random weights)."""
    params = random_inception_params(seed=5)
    path = str(tmp_path_factory.mktemp("inception") / inception.PTH_NAME)
    torch.save(_pth_state(params), path)
    assert not inception.sha256_of(path).startswith(inception.SHA256_PREFIX)
    return path, params


def test_other_inception_weights_are_refused_naming_the_option(other_inception):
    path, _ = other_inception
    with pytest.raises(params_io.WeightFileError) as err:
        features.get("inception", path)
    message = str(err.value)
    assert f"features.get('inception', weights={path!r}, check_hash=False)" in message
    assert "--config.features.check_hash=False" in message
    config = cifar10_ddpm.get_config()
    config.features.weights = path
    with pytest.raises(params_io.WeightFileError, match="check_hash=False"):
        features.from_config(config.features)


def test_other_inception_weights_load_with_the_option(other_inception):
    path, params = other_inception
    extractor = features.get("inception", weights=path, check_hash=False)
    assert extractor.weights_sha256 == inception.sha256_of(path)
    jax.tree.map(np.testing.assert_array_equal, extractor.params, params)
    config = cifar10_ddpm.get_config()  # the field the experiments read, set from the command line
    config.features.weights = path
    config.features.check_hash = False
    from_config = features.from_config(config.features)
    assert from_config.weights_sha256 == extractor.weights_sha256
    jax.tree.map(np.testing.assert_array_equal, from_config.params, params)
    cfg = ml_collections.ConfigDict({"name": "inception", "weights": path, "check_hash": False})
    assert features.from_config(cfg).identity() == extractor.identity()
