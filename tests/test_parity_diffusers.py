"""Our DDPM, DDIM, DPM-Solver++ and UniPC against diffusers' schedulers (code we did not write).

Same model function (the exact ε of a Gaussian mixture), same x_K, same per-step noise, same
integer timesteps and the same ᾱ table (diffusers' float32 `alphas_cumprod`): float32 samples
must agree to 1e-4 relative error.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import relative_error, require
from ddss import schedules
from ddss.models import gmm
from ddss.samplers import ddim, ddpm, dpm_solver, loop, unipc

torch = require("torch")
diffusers = require("diffusers")

BATCH = 64
TOL = 1e-4


@pytest.fixture(scope="module")
def mixture():
    return gmm.random_mixture(3, event_shape=(8, 8, 1), num_components=6)


def _schedule_of(scheduler):
    return schedules.from_alphas_cumprod(scheduler.alphas_cumprod.numpy())


def _reference_chain(scheduler, eps_fn, x_K, key, step_kwargs=lambda k: {}):
    """Runs diffusers' scheduler loop with our model function; returns the final sample."""
    x = torch.from_numpy(np.asarray(x_K))
    timesteps = scheduler.timesteps.numpy()
    for i, t in enumerate(timesteps):
        k = len(timesteps) - i
        eps = eps_fn(jnp.asarray(x.numpy()), jnp.full((x.shape[0],), float(t), jnp.float32))
        x = scheduler.step(torch.from_numpy(np.asarray(eps)), int(t), x, **step_kwargs(k)).prev_sample
    return x.numpy()


def _noise(key, k, like):
    return {"variance_noise": torch.from_numpy(np.asarray(loop.step_noise(key, k, like)))}


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("spacing,K", [("leading", 10), ("trailing", 5), ("trailing", 50)])
def test_ddim_matches_diffusers(mixture, eta, clip, spacing, K):
    ref = diffusers.DDIMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip, set_alpha_to_one=True,
        timestep_spacing=spacing,
    )
    ref.set_timesteps(K)
    schedule = _schedule_of(ref)
    eps_fn = gmm.eps_fn(mixture, schedule)
    x_K = jax.random.normal(jax.random.key(0), (BATCH, 8, 8, 1))
    key = jax.random.key(1)
    expected = _reference_chain(ref, eps_fn, x_K, key, lambda k: dict(eta=eta, **_noise(key, k, x_K)))
    params = ddim.init(schedule, ref.timesteps.numpy(), eta=eta)
    ours = jax.jit(lambda p, x, k: ddim.sample(p, eps_fn, x, k, clip_denoised=clip))(params, x_K, key)
    assert relative_error(ours, expected) <= TOL


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("stride,K", [("linear", 5), ("quadratic", 10), ("logsnr", 20)])
def test_dpm_solver_pp_matches_diffusers(mixture, order, stride, K):
    ref = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", solver_order=order, algorithm_type="dpmsolver++",
        solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero",
    )
    schedule = _schedule_of(ref)
    timesteps = np.round(schedules.timesteps(schedule, stride, K)).astype(np.int64)
    ref.set_timesteps(timesteps=timesteps.tolist())
    eps_fn = gmm.eps_fn(mixture, schedule)
    x_K = jax.random.normal(jax.random.key(2), (BATCH, 8, 8, 1))
    expected = _reference_chain(ref, eps_fn, x_K, None)
    params = dpm_solver.init(schedule, timesteps, order=order)
    ours = jax.jit(lambda p, x: dpm_solver.sample(p, eps_fn, x, jax.random.key(0)))(params, x_K)
    assert relative_error(ours, expected) <= TOL


@pytest.fixture(scope="module")
def overlapping_mixture():
    """Overlapping components: every sample's few-step chain is well conditioned in float32.

    With the well-separated components of `mixture`, a sample that a few-step solver leaves between
    two components at low noise amplifies float32 round-off by 10³ or more (one of 256 samples
    moved by 2e-2 relative between our float32 and float64 UniPC-3 on the 10-step EDM grid), and
    a 1e-4 comparison would then depend on the rounding of either implementation. Here the worst
    sample of 512 moves by 5e-5 between float32 and float64 in all the UniPC cases below.
    """
    return gmm.random_mixture(3, event_shape=(8, 8, 1), num_components=6, mean_scale=0.3, std_range=(0.2, 0.4))


def _unipc_reference(order, timesteps, clip=False):
    """diffusers' UniPC (bh2, data prediction, lower-order final, final σ = 0) on the given integer times.

    diffusers 0.42.1's `UniPCMultistepScheduler.set_timesteps` takes no `timesteps=` (only a count, or
    `sigmas=` with flow sigmas): after a `set_timesteps(K)` that resets the multistep state, the times
    are installed as its default branch would install them, σ/α of the table at each time and a final
    σ = 0. Dynamic thresholding with `sample_max_value=1` is clipping x̂_0 to [-1, 1].
    """
    ref = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", solver_order=order, solver_type="bh2", predict_x0=True,
        lower_order_final=True, final_sigmas_type="zero", thresholding=clip, sample_max_value=1.0,
    )
    ref.set_timesteps(len(timesteps))
    table = (((1 - ref.alphas_cumprod) / ref.alphas_cumprod) ** 0.5).numpy()
    sigmas = np.interp(timesteps, np.arange(len(table)), table)
    ref.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
    ref.timesteps = torch.from_numpy(np.asarray(timesteps, np.int64))
    return ref


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize(
    "stride,K,clip",
    [("linear", 4, False), ("linear", 5, False), ("linear", 10, False), ("logsnr", 4, False), ("logsnr", 5, False),
     ("logsnr", 10, False), ("quadratic", 20, False), ("edm", 10, False), ("logsnr", 10, True)],
)
def test_unipc_matches_diffusers(overlapping_mixture, order, stride, K, clip):
    schedule = _schedule_of(diffusers.UniPCMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear"))
    timesteps = np.round(schedules.timesteps(schedule, stride, K)).astype(np.int64)
    ref = _unipc_reference(order, timesteps, clip)
    eps_fn = gmm.eps_fn(overlapping_mixture, schedule)
    x_K = jax.random.normal(jax.random.key(5), (BATCH, 8, 8, 1))
    if clip:  # noisier start, so that x̂_0 leaves [-1, 1] and the clipping matters
        x_K = 1.5 * x_K
    expected = _reference_chain(ref, eps_fn, x_K, None)
    params = unipc.init(schedule, timesteps, order=order)
    ours = jax.jit(lambda p, x: unipc.sample(p, eps_fn, x, jax.random.key(0), clip_denoised=clip))(params, x_K)
    assert relative_error(ours, expected) <= TOL


@pytest.mark.parametrize("variance,clip", [("small", False), ("small", True), ("large", False)])
def test_ddpm_matches_diffusers(mixture, variance, clip, monkeypatch):
    ref = diffusers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip,
        variance_type={"small": "fixed_small", "large": "fixed_large"}[variance],
    )
    timesteps = [999, 700, 400, 200, 90, 30, 0]  # ends at 0, where diffusers adds no noise either
    ref.set_timesteps(timesteps=timesteps)
    schedule = _schedule_of(ref)
    eps_fn = gmm.eps_fn(mixture, schedule)
    x_K = jax.random.normal(jax.random.key(3), (BATCH, 8, 8, 1))
    key = jax.random.key(4)
    # diffusers' DDPM step draws its own noise; hand it ours, step by step.
    step_noise = iter(np.asarray(loop.step_noise(key, k, x_K)) for k in range(len(timesteps), 0, -1))
    monkeypatch.setattr(
        diffusers.schedulers.scheduling_ddpm, "randn_tensor", lambda *a, **kw: torch.from_numpy(next(step_noise))
    )
    expected = _reference_chain(ref, eps_fn, x_K, key)
    params = ddpm.init(schedule, np.asarray(timesteps), variance=variance)
    ours = ddpm.sample(params, eps_fn, x_K, key, clip_denoised=clip)
    assert relative_error(ours, expected) <= TOL
