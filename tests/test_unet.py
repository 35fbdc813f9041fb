"""The Flax UNet's skipping contract, block metadata and input checks (torch-free; parity with
diffusers' UNet2DModel is in test_parity_unet.py)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddss.diagnostics import count_compilations
from ddss.models import unet

TINY = unet.UNetConfig(
    sample_size=8, in_channels=1, out_channels=1, block_out_channels=(16, 32),
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    layers_per_block=1, norm_num_groups=4)


@pytest.fixture(scope="module")
def tiny():
    params = unet.init_params(TINY, jax.random.key(0))
    # Perturb every parameter so no block is near the identity by accident of initialisation.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
    x = jax.random.normal(jax.random.key(2), (3, 8, 8, 1))
    t = jnp.array([3.0, 250.5, 999.0])
    return params, x, t


def _apply(params, x, t, mask=None, skip=()):
    return unet.UNet(TINY).apply({"params": params}, x, t, mask, skip)


def test_block_list_matches_the_network():
    blocks = unet.blocks(TINY)
    # down: r, r+a; middle: r, a, r; up (first level has attention): (r, a) x 2, then r x 2
    assert [b.kind[0] for b in blocks] == list("rrararrararr")
    assert [b.index for b in blocks] == list(range(12))
    params = unet.init_params(TINY, jax.random.key(0))
    for b in blocks:  # every block's path names a parameter subtree of the right kind
        sub = params
        for p in b.path:
            sub = sub[p]
        assert ("conv1" in sub) == (b.kind == "resnet") and ("to_q" in sub) == (b.kind == "attention")


def test_block_macs_by_hand():
    """Residual branch: 3×3 convs in->out and out->out at H×W plus the time projection; attention:
    q, k, v, out projections (4·N·C²) plus the two N×N products (2·N²·C)."""
    blocks = unet.blocks(TINY)
    temb = 4 * 16
    assert blocks[0].macs == 64 * 9 * (16 * 16 + 16 * 16) + temb * 16  # 8×8, 16 -> 16
    assert blocks[1].macs == 16 * 9 * (16 * 32 + 32 * 32) + temb * 32  # 4×4 after downsampling, 16 -> 32
    assert blocks[2].macs == 4 * 16 * 32 * 32 + 2 * 16 * 16 * 32  # attention at 4×4, 32 channels
    assert blocks[6].macs == 16 * 9 * (64 * 32 + 32 * 32) + temb * 32  # up: concat 32 + 32 -> 32
    assert unet.network_macs(TINY) > sum(b.macs for b in blocks)


def test_empty_mask_is_the_full_network(tiny):
    params, x, t = tiny
    full = _apply(params, x, t)
    np.testing.assert_array_equal(_apply(params, x, t, jnp.zeros(12, bool)), full)


@pytest.mark.parametrize("skipped", [(0,), (2,), (6,), (1, 4, 5), (3, 7, 9, 11), tuple(range(12))])
def test_mask_and_static_skip_agree(tiny, skipped):
    params, x, t = tiny
    mask = np.zeros(12, bool)
    mask[list(skipped)] = True
    masked = _apply(params, x, t, jnp.asarray(mask))
    static = _apply(params, x, t, skip=skipped)
    np.testing.assert_allclose(masked, static, rtol=1e-5, atol=1e-5)
    assert float(jnp.max(jnp.abs(masked - _apply(params, x, t)))) > 1e-3  # skipping changes the output


def test_skipped_resnet_is_its_shortcut(tiny):
    """Block 6 is an up-path block (channels 64 -> 32): skipped, it is its 1×1 projection."""
    params, x, t = tiny
    block = unet.blocks(TINY)[6]
    sub = params[block.path[0]][block.path[1]]
    inp = jax.random.normal(jax.random.key(3), (2, 4, 4, 64))
    temb = jnp.zeros((2, 64))
    out = unet.ResnetBlock(TINY, 32).apply({"params": sub}, inp, temb, None, statically_skipped=True, train=False)
    kernel, bias = sub["conv_shortcut"]["kernel"], sub["conv_shortcut"]["bias"]
    np.testing.assert_allclose(out, jnp.einsum("bhwi,io->bhwo", inp, kernel[0, 0]) + bias, rtol=1e-5, atol=1e-6)


def test_one_compilation_for_every_mask(tiny):
    params, x, t = tiny
    fn = jax.jit(lambda p, m: _apply(p, x, t, m))
    rng = np.random.default_rng(0)
    with count_compilations() as c:
        outs = [fn(params, jnp.asarray(rng.random(12) < 0.5)) for _ in range(6)]
        jax.block_until_ready(outs)
    assert c.count("<lambda>") == 1


def test_vmap_over_masks(tiny):
    params, x, t = tiny
    masks = jnp.asarray(np.random.default_rng(1).random((5, 12)) < 0.4)
    batched = jax.vmap(lambda m: _apply(params, x, t, m))(masks)
    for i in range(5):
        np.testing.assert_allclose(batched[i], _apply(params, x, t, masks[i]), rtol=1e-5, atol=1e-5)


def _count(text: str, op: str) -> int:
    return text.count(op)


def test_static_skip_removes_the_computation(tiny):
    """A statically skipped residual block drops exactly its two 3×3 convolutions from the program,
    an attention block its two attention products and four projections; a mask drops nothing."""
    params, x, t = tiny
    lower = lambda **kw: jax.jit(lambda p: _apply(p, x, t, **kw)).lower(params).as_text()
    full = lower()
    convs, dots = _count(full, "stablehlo.convolution"), _count(full, "stablehlo.dot_general")
    resnet_skipped = lower(skip=(0,))
    assert _count(resnet_skipped, "stablehlo.convolution") == convs - 2
    attention_skipped = lower(skip=(2,))
    assert _count(attention_skipped, "stablehlo.dot_general") == dots - 6
    masked = jax.jit(lambda p, m: _apply(p, x, t, m)).lower(params, jnp.ones(12, bool)).as_text()
    assert _count(masked, "stablehlo.convolution") == convs


def test_scalar_time_broadcasts(tiny):
    params, x, t = tiny
    np.testing.assert_allclose(_apply(params, x, 250.5), _apply(params, x, jnp.full((3,), 250.5)), rtol=1e-6)


def test_bad_inputs_are_named(tiny):
    params, x, t = tiny
    with pytest.raises(ValueError, match=r"shape \[B, 8, 8, 1\]"):
        _apply(params, jnp.zeros((2, 16, 16, 1)), t[:2])
    with pytest.raises(ValueError, match=r"shape \[B, 8, 8, 1\]"):
        _apply(params, jnp.zeros((2, 8, 8, 3)), t[:2])
    with pytest.raises(ValueError, match="L=12 blocks"):
        _apply(params, x, t, jnp.zeros(11, bool))
    with pytest.raises(ValueError, match="out of range"):
        _apply(params, x, t, skip=(12,))


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="not divisible by norm_num_groups"):
        unet.UNetConfig(block_out_channels=(48, 64), down_block_types=("DownBlock2D",) * 2,
                        up_block_types=("UpBlock2D",) * 2, norm_num_groups=32)
    with pytest.raises(ValueError, match="unsupported block types"):
        unet.UNetConfig(down_block_types=("CrossAttnDownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D"))
    with pytest.raises(ValueError, match="one block type per level"):
        unet.UNetConfig(block_out_channels=(128, 256))
