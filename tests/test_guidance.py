"""Learned-variance ancestral sampling and guidance against openai's guided_diffusion on the same
random-weight ADM-G pair (class-conditional learned-sigma UNet and noisy classifier), same noise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import relative_error, require
from ddss import schedules
from ddss.models import adm
from ddss.samplers import ddim, ddpm, guidance, loop

FLAGS = dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="8",
             num_heads=2, use_scale_shift_norm=True, learn_sigma=True, class_cond=True)
SCALE = 3.0


def _randomise(th, module, seed):
    th.manual_seed(seed)
    with th.no_grad():  # zero-initialised output layers would hide whole branches
        for p in module.parameters():
            p.add_(0.1 * th.randn_like(p))
    return module.eval()


@pytest.fixture(scope="module")
def pair():
    th = require("torch")
    script_util = require("guided_diffusion.script_util")
    unet_module = require("guided_diffusion.unet")
    th.manual_seed(0)
    model = _randomise(th, script_util.create_model(**FLAGS), 1)
    classifier = _randomise(th, unet_module.EncoderUNetModel(
        image_size=16, in_channels=3, model_channels=32, out_channels=1000, num_res_blocks=1,
        attention_resolutions=(2,), channel_mult=(1, 2), num_head_channels=16, use_scale_shift_norm=True,
        resblock_updown=True, pool="attention"), 2)
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    config = adm.ADMConfig.from_flags(**FLAGS)
    ours = adm.ADMModel(config, adm.from_state_dict(state, adm.param_shapes(config)), adm.schedule_spec("linear", 1000))
    c_config = adm.ClassifierConfig(image_size=16, classifier_width=32, classifier_depth=1, attention_ds=(2,),
                                    channel_mult=(1, 2), num_head_channels=16)
    c_params = adm.from_state_dict({k: v.detach().numpy() for k, v in classifier.state_dict().items()},
                                   adm.classifier_param_shapes(c_config))
    return model, classifier, ours, adm.logits_fn(c_config, c_params)


def _torch_cond_fn(th, classifier, scale):
    """guided-diffusion's scripts/classifier_sample.py cond_fn."""
    def cond_fn(x, t, y=None):
        with th.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_probs = th.nn.functional.log_softmax(classifier(x_in, t), dim=-1)
            selected = log_probs[range(len(log_probs)), y.view(-1)]
            return th.autograd.grad(selected.sum(), x_in)[0] * scale
    return cond_fn


def _nchw(th, a):
    return th.from_numpy(np.asarray(a).transpose(0, 3, 1, 2).copy())


@pytest.mark.parametrize("guided", [False, True], ids=["learned-sigma", "learned-sigma+classifier"])
def test_ancestral_learned_range_matches_p_sample_loop(pair, guided, monkeypatch):
    th = require("torch")
    gd_script = require("guided_diffusion.script_util")
    respace = require("guided_diffusion.respace")
    model, classifier, ours, logits = pair
    diffusion = gd_script.create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                                    timestep_respacing="5")
    times = np.array(sorted(respace.space_timesteps(1000, "5"), reverse=True), np.float64)
    x_K = jax.random.normal(jax.random.key(3), (3, 16, 16, 3))
    key, y = jax.random.key(4), jnp.array([7, 123, 999])
    noises = [_nchw(th, loop.step_noise(key, k, x_K)) for k in range(len(times), 0, -1)]
    monkeypatch.setattr(th, "randn_like", lambda x: noises.pop(0))
    with th.no_grad():
        want = diffusion.p_sample_loop(model, (3, 3, 16, 16), noise=_nchw(th, x_K), clip_denoised=True,
                                       model_kwargs={"y": th.from_numpy(np.asarray(y))}, progress=False,
                                       cond_fn=_torch_cond_fn(th, classifier, SCALE) if guided else None)
    assert not noises
    params = ddpm.init(ours.schedule, times, variance="learned_range")
    cond = guidance.classifier_gradient(logits, SCALE) if guided else None
    got = jax.jit(lambda x, key_, y_: ddpm.sample(
        params, lambda x_, t_: ours.model_output(x_, t_, y_), x, key_, clip_denoised=True,
        cond_fn=None if cond is None else (lambda x_, t_: cond(x_, t_, y_))))(x_K, key, y)
    assert relative_error(got, want.numpy().transpose(0, 2, 3, 1)) < 1e-4
    if guided:  # the guidance is visible: unguided sampling from the same noise lands elsewhere
        plain = ddpm.sample(params, lambda x_, t_: ours.model_output(x_, t_, y), x_K, key, clip_denoised=True)
        assert relative_error(plain, got) > 1e-2


def test_classifier_guided_eps_matches_condition_score(pair):
    """ε̃ = ε − √(1−ᾱ_t)·s·∇ log p(y|x_t): guided-diffusion's condition_score, used by its DDIM sampler."""
    th = require("torch")
    gd_script = require("guided_diffusion.script_util")
    model, classifier, ours, logits = pair
    diffusion = gd_script.create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear")
    x = jax.random.normal(jax.random.key(5), (3, 16, 16, 3))
    t, y = np.array([10, 500, 990]), jnp.array([1, 2, 3])
    tt, yt = th.from_numpy(t), th.from_numpy(np.asarray(y))
    with th.no_grad():
        out = diffusion.p_mean_variance(model, _nchw(th, x), tt, clip_denoised=False, model_kwargs={"y": yt})
        cond = diffusion.condition_score(_torch_cond_fn(th, classifier, SCALE), out, _nchw(th, x), tt,
                                         model_kwargs={"y": yt})
        want = diffusion._predict_eps_from_xstart(_nchw(th, x), tt, cond["pred_xstart"]).numpy()
    eps = jax.jit(guidance.classifier_guided(lambda x_, t_, y_: ours.eps_fn(x_, t_, y_), logits, ours.schedule, SCALE))
    got = eps(x, jnp.asarray(t, jnp.float32), y)
    assert relative_error(got, want.transpose(0, 2, 3, 1)) < 1e-4
    plain = jax.jit(lambda x_, t_, y_: ours.eps_fn(x_, t_, y_))(x, jnp.asarray(t, jnp.float32), y)
    assert relative_error(got, plain) > 1e-3  # the guidance moved it


def test_classifier_free_guidance_and_labels_do_not_recompile(pair):
    _, _, ours, _ = pair
    x = jax.random.normal(jax.random.key(6), (2, 16, 16, 3))
    t, y = jnp.array([100.0, 600.0]), jnp.array([3, 4])
    eps = jax.jit(lambda x_, t_, y_: ours.eps_fn(x_, t_, y_))
    w = 2.5
    cfg = guidance.classifier_free(eps, w, null_class=999)
    null = jnp.array([999, 999])
    want = eps(x, t, null) + w * (eps(x, t, y) - eps(x, t, null))
    assert relative_error(cfg(x, t, y), want) < 1e-5
    assert relative_error(guidance.classifier_free(eps, 1.0, 999)(x, t, y), eps(x, t, y)) < 1e-5
    params = ddim.init(ours.schedule, schedules.timesteps(ours.schedule, "quadratic", 3))
    run = jax.jit(lambda x_, y_: ddim.sample(params, lambda a, b: cfg(a, b, y_), x_, jax.random.key(0)))
    run(x, y)
    from ddss import diagnostics

    with diagnostics.count_compilations() as count:
        other = run(x, jnp.array([5, 6]))
    assert count.total == 0 and not np.allclose(np.asarray(other), np.asarray(run(x, y)))
