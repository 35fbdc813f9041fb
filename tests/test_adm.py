"""The Flax ADM UNet and noisy classifier against openai's guided_diffusion (guided-diffusion-sdk==1.0.0)
on random weights moved away from their zero initialisation: both attention orders, FiLM and plain
time conditioning, resblock up/down sampling, class conditioning, learned sigma; skipping; flags."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import relative_error, require
from ddss import diagnostics
from ddss.models import adm, params_io

# Small networks of the real architecture: 16×16 images, two levels, attention at the second.
FLAGS = [
    dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
         num_heads=2, use_scale_shift_norm=True, learn_sigma=True, class_cond=True),  # ADM-G's layout
    dict(image_size=16, num_channels=32, num_res_blocks=2, channel_mult="1,2", attention_resolutions="8",
         num_head_channels=16, resblock_updown=True, use_new_attention_order=True),
    dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="16,8",
         num_heads=4, use_scale_shift_norm=False, learn_sigma=True),  # improved-diffusion's layout
]


def _torch_model(flags, seed):
    th = require("torch")
    script_util = require("guided_diffusion.script_util")
    th.manual_seed(seed)
    model = script_util.create_model(**flags).eval()
    with th.no_grad():  # every weight random: zero-initialised output convs would hide whole branches
        for p in model.parameters():
            p.add_(0.2 * th.randn_like(p))
    return model


def _state(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("flags", FLAGS, ids=["adm-g", "updown-new-order", "improved-ddpm"])
def test_unet_matches_guided_diffusion(flags):
    th = require("torch")
    model = _torch_model(flags, 0)
    config = adm.ADMConfig.from_flags(**flags)
    params = adm.from_state_dict(_state(model), adm.param_shapes(config))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 16, 16, 3)).astype(np.float32)
    t = np.array([3.0, 480.5, 999.0], np.float32)
    y = np.array([5, 0, 999]) if flags.get("class_cond") else None
    with th.no_grad():
        want = model(th.from_numpy(x.transpose(0, 3, 1, 2)), th.from_numpy(t),
                     None if y is None else th.from_numpy(y)).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(adm.ADMNet(config).apply({"params": params}, x, t, y))
    assert got.shape == (3, 16, 16, 6 if flags.get("learn_sigma") else 3)
    assert relative_error(got, want) < 1e-5


def test_classifier_matches_guided_diffusion(tmp_path):
    th = require("torch")
    unet_module = require("guided_diffusion.unet")
    th.manual_seed(2)
    model = unet_module.EncoderUNetModel(image_size=16, in_channels=3, model_channels=32, out_channels=10,
                                         num_res_blocks=1, attention_resolutions=(2,), channel_mult=(1, 2),
                                         num_head_channels=16, use_scale_shift_norm=True, resblock_updown=True,
                                         pool="attention").eval()
    with th.no_grad():
        for p in model.parameters():
            p.add_(0.2 * th.randn_like(p))
    config = adm.ClassifierConfig(image_size=16, classifier_width=32, classifier_depth=1, attention_ds=(2,),
                                  channel_mult=(1, 2), num_head_channels=16, num_classes=10)
    params = adm.from_state_dict(_state(model), adm.classifier_param_shapes(config))
    x = np.random.default_rng(3).standard_normal((2, 16, 16, 3)).astype(np.float32)
    t = np.array([10.0, 700.0], np.float32)
    with th.no_grad():
        want = model(th.from_numpy(x.transpose(0, 3, 1, 2)), th.from_numpy(t)).numpy()
    got = np.asarray(adm.ADMClassifier(config).apply({"params": params}, x, t))
    assert relative_error(got, want) < 1e-5
    # From a torch.save'd file with create_classifier's flags, then from its conversion without them.
    path, out = str(tmp_path / "classifier.pt"), str(tmp_path / "classifier.safetensors")
    th.save(model.state_dict(), path)
    flags = dict(image_size=16, classifier_width=32, classifier_depth=1, classifier_attention_resolutions="8",
                 channel_mult="1,2", num_head_channels=16, num_classes=10)
    for source in (path, out):
        loaded_config, loaded = adm.load_classifier(source, **(flags if source == path else {}))
        np.testing.assert_array_equal(np.asarray(adm.logits_fn(loaded_config, loaded)(x, t)), got)
        if source == path:
            adm.main(["adm", path, out, "--classifier"] + [f"--{k}={v}" for k, v in flags.items()])
    with pytest.raises(params_io.WeightFileError, match="is not an ADM weight file"):
        adm.load(out)


def test_skipping_a_block_equals_removing_its_residual_branch():
    """A traced mask and a static list give the same output; a skipped down block still halves the
    resolution (the output keeps its shape), and each skip changes the output."""
    flags = FLAGS[1]
    config = adm.ADMConfig.from_flags(**flags)
    params = adm.from_state_dict(_state(_torch_model(flags, 4)), adm.param_shapes(config))
    blocks = adm.blocks(config)
    kinds = [b.kind for b in blocks]
    assert kinds.count("attention") == 2 + 1 + 3  # level 1 down (2 res blocks), the middle, level 1 up (3)
    down = next(b.index for b in blocks if b.path == ("input_blocks_3_0",))  # the down-sampling resblock
    net = adm.ADMNet(config)
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    t = jnp.array([100.0, 800.0])
    full = net.apply({"params": params}, x, t)
    fn = jax.jit(lambda m: net.apply({"params": params}, x, t, None, m))
    fn(jnp.zeros(len(blocks), bool))
    for index in (0, down, len(blocks) - 1):
        mask = jnp.zeros(len(blocks), bool).at[index].set(True)
        with diagnostics.count_compilations() as count:
            masked = fn(mask)
        assert count.total == 0  # one compilation serves every mask
        static = net.apply({"params": params}, x, t, None, None, (index,))
        assert relative_error(masked, static) < 1e-5  # two compiled programs: float32 rounding apart
        assert masked.shape == full.shape and not np.allclose(np.asarray(masked), np.asarray(full))


def test_block_costs_add_up_to_the_compiled_flops():
    config = adm.ADMConfig.from_flags(**FLAGS[1])
    params = adm.init_params(config, jax.random.key(0))
    x, t = jnp.zeros((1, 16, 16, 3)), jnp.zeros((1,))
    cost = jax.jit(lambda x_: adm.ADMNet(config).apply({"params": params}, x_, t)).lower(x).compile().cost_analysis()
    flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
    # MACs count multiply-adds of convolutions, dense layers and attention: 2 flops each; the norms,
    # activations and softmax add a few percent on top.
    assert 2 * adm.network_macs(config) == pytest.approx(flops, rel=0.1)


def test_flags_and_checkpoints_that_do_not_match_say_which():
    with pytest.raises(ValueError, match="unknown flags \\['num_chanels'\\]"):
        adm.ADMConfig.from_flags(image_size=64, num_chanels=128)
    with pytest.raises(ValueError, match="no default channel_mult for image_size=16"):
        adm.ADMConfig.from_flags(image_size=16, num_channels=32)
    with pytest.raises(ValueError, match="not a multiple of GroupNorm's 32 groups"):
        adm.ADMConfig.from_flags(image_size=64, num_channels=48)
    config = adm.ADMConfig.from_flags(**FLAGS[0])
    state = _state(_torch_model(FLAGS[0], 5))
    wrong = adm.ADMConfig.from_flags(**{**FLAGS[0], "class_cond": False})
    with pytest.raises(params_io.WeightFileError, match="label_emb"):
        adm.from_state_dict(state, adm.param_shapes(wrong))
    with pytest.raises(ValueError, match="class labels y exactly when"):
        adm.ADMNet(config).apply({"params": adm.init_params(config, jax.random.key(0))}, jnp.zeros((1, 16, 16, 3)),
                                 jnp.zeros((1,)))


def test_load_an_openai_checkpoint_then_its_conversion_without_flags(tmp_path):
    """adm.load reads a torch.save'd state dict with its create_model_and_diffusion flags (time rescaled
    to 1000/T for improved-diffusion's T = 4000); the converted safetensors file loads without flags
    and gives the same ε; a flag that contradicts the weights is named."""
    th = require("torch")
    flags = FLAGS[2]
    model = _torch_model(flags, 6)
    path = str(tmp_path / "imagenet64_uncond.pt")
    th.save(model.state_dict(), path)
    diffusion = dict(diffusion_steps=4000, noise_schedule="cosine", rescale_timesteps=True)
    loaded = adm.load(path, **flags, **diffusion)
    x = np.random.default_rng(7).standard_normal((2, 16, 16, 3)).astype(np.float32)
    t = np.array([10.0, 3999.0], np.float32)
    with th.no_grad():
        want = model(th.from_numpy(x.transpose(0, 3, 1, 2)), th.from_numpy(t * 1000 / 4000)).numpy()
    want = want.transpose(0, 2, 3, 1)
    assert relative_error(loaded.eps_fn(x, t), want[..., :3]) < 1e-5
    assert relative_error(loaded.variance_fn(x, t), want[..., 3:]) < 1e-5
    assert loaded.schedule.num_timesteps == 4000 and loaded.learned_variance

    out = str(tmp_path / "imagenet64_uncond.safetensors")
    adm.main(["adm", path, out] + [f"--{k}={v}" for k, v in {**flags, **diffusion}.items()])
    again = adm.load(out)
    np.testing.assert_array_equal(np.asarray(again.eps_fn(x, t)), np.asarray(loaded.eps_fn(x, t)))

    with pytest.raises(params_io.WeightFileError, match="outputs 6 channels: learn_sigma=True"):
        adm.load(path, **{**flags, "learn_sigma": False})
    with pytest.raises(params_io.WeightFileError, match="FiLM scale/shift: use_scale_shift_norm=False"):
        adm.load(path, **{**flags, "use_scale_shift_norm": True})
    with pytest.raises(params_io.WeightFileError, match="attention layers sit at other resolutions"):
        adm.load(path, **{**flags, "attention_resolutions": "8"})


def test_openai_noise_schedules():
    gd = require("guided_diffusion.gaussian_diffusion")
    from ddss.models import pretrained

    for name, steps in (("linear", 1000), ("linear", 4000), ("cosine", 4000)):
        want = np.cumprod(1 - gd.get_named_beta_schedule(name, steps))
        got = np.exp(np.asarray(pretrained.schedule_from_spec(adm.schedule_spec(name, steps)).log_alpha_bar_table,
                                np.float64))
        np.testing.assert_allclose(got[:steps], want, rtol=1e-6)


def _exact(flags):
    from ddss.configs import imagenet64_adm_evolution, imagenet64_iddpm_ddss

    return {"adm-g-64": imagenet64_adm_evolution.ADM_G_FLAGS, "iddpm-64": imagenet64_iddpm_ddss.IDDPM_FLAGS}[flags]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adm-g-64", "iddpm-64"])
def test_exact_imagenet64_networks_match_guided_diffusion(name):
    """The full-size 64×64 networks (ADM-G: 296M parameters; improved-DDPM: 121M) at the flags of
    ddss/configs/imagenet64_*.py, loaded from a torch.save'd state dict with those flags."""
    th = require("torch")
    flags = {k: v for k, v in _exact(name).items() if k not in adm.DIFFUSION_FLAGS}
    model = _torch_model(flags, 11)
    config = adm.ADMConfig.from_flags(**flags)
    params = adm.from_state_dict(_state(model), adm.param_shapes(config))
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype(np.float32)
    t = np.array([5.0, 900.0], np.float32)
    y = np.array([3, 998]) if flags.get("class_cond") else None
    with th.no_grad():
        want = model(th.from_numpy(x.transpose(0, 3, 1, 2)), th.from_numpy(t),
                     None if y is None else th.from_numpy(y)).numpy().transpose(0, 2, 3, 1)
    got = np.asarray(jax.jit(lambda p: adm.ADMNet(config).apply({"params": p}, x, t, y))(params))
    assert relative_error(got, want) < 1e-4


@pytest.mark.slow
def test_exact_imagenet64_classifier_matches_guided_diffusion():
    """openai's 64×64 noisy classifier (64x64_classifier.pt's flags) against create_classifier's network."""
    th = require("torch")
    script_util = require("guided_diffusion.script_util")
    from ddss.configs import imagenet64_adm_evolution

    flags = imagenet64_adm_evolution.CLASSIFIER_FLAGS
    th.manual_seed(12)
    model = script_util.create_classifier(**flags, classifier_use_fp16=False).eval()
    with th.no_grad():
        for p in model.parameters():
            p.add_(0.05 * th.randn_like(p))
    config = adm.ClassifierConfig.from_flags(**flags)
    params = adm.from_state_dict(_state(model), adm.classifier_param_shapes(config))
    x = np.random.default_rng(3).standard_normal((2, 64, 64, 3)).astype(np.float32)
    t = np.array([10.0, 700.0], np.float32)
    with th.no_grad():
        want = model(th.from_numpy(x.transpose(0, 3, 1, 2)), th.from_numpy(t)).numpy()
    got = np.asarray(jax.jit(lambda p: adm.ADMClassifier(config).apply({"params": p}, x, t))(params))
    assert relative_error(got, want) < 1e-4
