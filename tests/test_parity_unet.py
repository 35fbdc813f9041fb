"""The Flax UNet and the diffusers converter against diffusers' own `UNet2DModel` in torch.

A diffusers model with random weights (every GroupNorm scale and bias perturbed too, so a wrong
mapping of any tensor shows) is saved with `save_pretrained`, converted by `ddss.models.convert`
and run on the same random images and times: float32 outputs must agree to 1e-4 relative error.
Skipping is checked against the same torch model with the skipped blocks' forward replaced by
their shortcut (residual blocks) or the identity (attention).
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import relative_error, require
from ddss.models import convert, params_io, unet

torch = require("torch")
diffusers = require("diffusers")

TOL = 1e-4

# google/ddpm-cifar10-32's config.json
CIFAR10_CONFIG = {
    "_class_name": "UNet2DModel", "act_fn": "silu", "attention_head_dim": None,
    "block_out_channels": [128, 256, 256, 256], "center_input_sample": False,
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "in_channels": 3,
    "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-06, "norm_num_groups": 32,
    "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
    "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
}

# Exercises the other options: scale-shift time embedding, multi-head attention, padding 1,
# sin/cos order, a middle output scale, input centring, attention at two levels.
VARIANT_CONFIG = {
    "_class_name": "UNet2DModel", "block_out_channels": [32, 64], "sample_size": 16, "in_channels": 3,
    "out_channels": 3, "down_block_types": ["AttnDownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "AttnUpBlock2D"], "layers_per_block": 1, "attention_head_dim": 16,
    "norm_num_groups": 8, "norm_eps": 1e-5, "resnet_time_scale_shift": "scale_shift", "downsample_padding": 1,
    "flip_sin_to_cos": True, "freq_shift": 0, "mid_block_scale_factor": 1.4142, "center_input_sample": True,
}


def _diffusers_model(config: dict, seed: int):
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in config.items() if not k.startswith("_")}
    model = diffusers.UNet2DModel(**kwargs).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _save(model, directory) -> str:
    model.save_pretrained(directory, safe_serialization=True)
    return str(directory)


def _inputs(config: dict, batch: int = 3, seed: int = 0):
    s, c = config["sample_size"], config.get("in_channels", 3)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, s, s, c)).astype(np.float32)
    t = np.array([0.0, 417.3, 999.0][:batch], np.float32)
    return x, t


def _torch_out(model, x, t):
    with torch.no_grad():
        out = model(torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(t)).sample
    return out.numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    model = _diffusers_model(CIFAR10_CONFIG, seed=0)
    directory = _save(model, tmp_path_factory.mktemp("ddpm-cifar10-32"))
    return model, convert.load_diffusers(directory), directory


def test_cifar10_config_reads_as_ddpm_architecture(cifar10):
    _, ours, _ = cifar10
    assert ours.config.block_out_channels == (128, 256, 256, 256)
    assert ours.num_blocks == 28  # 8 down + 2 attention, 3 middle, 12 up + 3 attention
    assert unet.count_params(ours.params) == sum(p.numel() for p in cifar10[0].parameters())


def test_cifar10_parity(cifar10):
    theirs, ours, _ = cifar10
    x, t = _inputs(CIFAR10_CONFIG)
    got = jax.jit(lambda p, x, t: unet.eps_fn(ours.config, p)(x, t))(ours.params, x, t)
    err = relative_error(got, _torch_out(theirs, x, t))
    assert err <= TOL, err


def test_variant_options_parity(tmp_path):
    theirs = _diffusers_model(VARIANT_CONFIG, seed=1)
    ours = convert.load_diffusers(_save(theirs, tmp_path))
    x, t = _inputs(VARIANT_CONFIG, seed=1)
    err = relative_error(ours.eps_fn(jnp.asarray(x), jnp.asarray(t)), _torch_out(theirs, x, t))
    assert err <= TOL, err


def test_old_attention_names_convert(tmp_path, cifar10):
    """Checkpoints saved before diffusers renamed attention weights (query/key/value/proj_attn)."""
    from safetensors.numpy import load_file, save_file

    theirs, ours, directory = cifar10
    state = load_file(os.path.join(directory, convert.WEIGHTS))
    renames = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    old = {}
    for k, v in state.items():
        for new, dep in renames.items():
            k = k.replace(f".{new}.", f".{dep}.")
        old[k] = v
    assert any(".query." in k for k in old)
    save_file(old, str(tmp_path / convert.WEIGHTS))
    (tmp_path / "config.json").write_text(json.dumps(CIFAR10_CONFIG))
    converted = convert.load_diffusers(str(tmp_path))
    for a, b in zip(jax.tree.leaves(converted.params), jax.tree.leaves(ours.params)):
        np.testing.assert_array_equal(a, b)


def _torch_skip(model, config: dict, skipped: list[unet.Block]):
    """Replaces the forward of the given blocks in the torch model by their residual-free path."""
    for block in skipped:
        module = model
        for part in block.path:
            name, _, index = part.rpartition("_")
            module = getattr(module, name)[int(index)] if index.isdigit() else getattr(module, part)
        if block.kind == "resnet":
            def forward(x, temb, m=module):
                shortcut = m.conv_shortcut(x) if m.conv_shortcut is not None else x
                return shortcut / m.output_scale_factor
        else:
            def forward(x, m=module, **kwargs):
                return x / m.rescale_output_factor
        module.forward = forward


@pytest.mark.parametrize("which", [(0,), (3, 9), (14, 16, 20, 27), tuple(range(28))])
def test_skipping_matches_torch_with_blocks_removed(cifar10, which):
    """Mask and static skip list both equal diffusers' model with those blocks' branches removed."""
    _, ours, directory = cifar10
    theirs = diffusers.UNet2DModel.from_pretrained(directory).eval()
    _torch_skip(theirs, CIFAR10_CONFIG, [ours.blocks[i] for i in which])
    x, t = _inputs(CIFAR10_CONFIG, batch=2, seed=2)
    expected = _torch_out(theirs, x, t)
    mask = np.zeros(ours.num_blocks, bool)
    mask[list(which)] = True
    masked = jax.jit(lambda p, m: unet.eps_fn(ours.config, p, skip_mask=m)(x, t))(ours.params, mask)
    static = jax.jit(lambda p: unet.eps_fn(ours.config, p, skip=which)(x, t))(ours.params)
    assert relative_error(masked, expected) <= TOL
    assert relative_error(static, expected) <= TOL


def test_skipped_blocks_include_projection_and_attention(cifar10):
    _, ours, _ = cifar10
    blocks = ours.blocks
    assert [b.kind for b in blocks].count("attention") == 6
    assert blocks[17].kind == "attention" and blocks[17].path == ("up_blocks_1", "attentions_0")
    projections = [b.index for b in blocks if b.kind == "resnet" and b.in_channels != b.out_channels]
    up_resnets = [b.index for b in blocks if b.kind == "resnet" and b.path[0].startswith("up_blocks")]
    assert set(up_resnets) <= set(projections)  # every up-path block follows a skip concatenation
    assert 2 in projections  # 128 -> 256 at the second level


def test_shape_mismatch_is_one_clear_error(tmp_path):
    theirs = _diffusers_model(VARIANT_CONFIG, seed=3)
    directory = _save(theirs, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["block_out_channels"] = [32, 96]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(params_io.WeightFileError, match="does not match the model config.*shape mismatch"):
        convert.load_diffusers(directory)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*huggingface-cli download"):
        convert.load_diffusers(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="No config.json"):
        convert.load_diffusers(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(VARIANT_CONFIG))
    with pytest.raises(params_io.WeightFileError, match="No diffusion_pytorch_model.safetensors"):
        convert.load_diffusers(str(tmp_path))
    (tmp_path / convert.WEIGHTS).write_bytes(b"\x00" * 64)
    with pytest.raises(params_io.WeightFileError, match="corrupt"):
        convert.load_diffusers(str(tmp_path))


def test_pipeline_layout_and_scheduler_config(tmp_path):
    theirs = _diffusers_model(VARIANT_CONFIG, seed=4)
    _save(theirs, tmp_path / "unet")
    os.makedirs(tmp_path / "scheduler")
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02, "num_train_timesteps": 1000}))
    model = convert.load_diffusers(str(tmp_path))
    reference = diffusers.DDPMScheduler(beta_schedule="linear", num_train_timesteps=1000)
    np.testing.assert_allclose(np.exp(np.asarray(model.schedule.log_alpha_bar_table)),
                               reference.alphas_cumprod.numpy(), rtol=1e-5)


def test_unsupported_options_are_named():
    with pytest.raises(ValueError, match="time_embedding_type='fourier'"):
        convert.config_from_diffusers({**CIFAR10_CONFIG, "time_embedding_type": "fourier"})
    with pytest.raises(ValueError, match="only diffusers UNet2DModel"):
        convert.config_from_diffusers({**CIFAR10_CONFIG, "_class_name": "UNet2DConditionModel"})
