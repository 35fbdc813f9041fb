"""ddss: learned and searched few-step samplers for pretrained diffusion models, in JAX.

The public API. Everything a user needs is reachable from here; the rest (names starting with `_`,
and the modules of `ddss.experiments`, which the `ddss` command runs) is internal.

Samplers, as pure functions (`init(schedule, timesteps, ...) -> params`, then
`sample(params, eps_fn, x_K, key) -> x_0`; jittable, vmappable, differentiable in their timesteps):

    ddss.schedules                  VP noise schedules, ᾱ(t) for real t, time grids (linear, quadratic,
                                    λ-uniform "logsnr", EDM ρ=7)
    ddss.samplers.ddim              DDIM(η)
    ddss.samplers.ddpm              DDPM ancestral sampling (small, large or learned-range variance)
    ddss.samplers.dpm_solver        DPM-Solver++ (2M, 3M)
    ddss.samplers.unipc             UniPC (bh2, orders 2 and 3, with its corrector)
    ddss.samplers.ipndm             iPNDM (orders 1-4)
    ddss.samplers.ggdm              GGDM, the learnable family of DDSS (VARS, GGDM, +PRED, +TIME)
    ddss.samplers.guidance          classifier and classifier-free guidance, as model-function wrappers
    ddss.samplers.conditioning      class labels beside the noise (`Labelled(x, y)`), and how they are drawn
    ddss.samplers.raise_if_nonfinite   host-side check of a sample's `SampleInfo`

Learned and searched samplers, as files (`sampler.sample(eps_fn, x_K, key)` inside your own `jit`):

    ddss.load_sampler(path)         a file written by DDSS or by the evolutionary search
    ddss.save_sampler(path, params, clip_denoised=...)        a GGDM sampler (DDSS)
    ddss.save_evolved_sampler(path, timesteps, skip_mask, kind=..., schedule=..., clip_denoised=...)
    ddss.LoadedSampler, ddss.EvolvedSampler                   what `load_sampler` returns
    ddss.save_timesteps_json(path, sampler)                   its timesteps as plain JSON (diffusers' `timesteps=`)
    ddss.timesteps_record(sampler)                            the same record as a dict

Models (`model.eps_fn(x [B, H, W, C], t [B]) -> ε̂`, with skippable blocks):

    ddss.models.digits.load()       the embedded default: a DDPM UNet on the 8×8 digits (ships with ddss)
    ddss.models.digits.load_learned_sampler()   a K = 5 sampler learned for it (ships with ddss)
    ddss.models.convert.load_diffusers(directory, prediction_type=None)   a diffusers `UNet2DModel`
                                    checkpoint (ε, v or sample prediction; learned variance)
    ddss.models.adm.load(path, **flags)   an openai ADM / improved-DDPM checkpoint (`eps_fn(x, t, y=None)`),
                                    with `adm.load_classifier` for its noisy classifier
    ddss.models.gmm                 an analytic Gaussian mixture with its exact ε
    ddss.models.adapters            x₀- and v-prediction as ε-prediction

Loaded on first use (they pull in heavier libraries):

    ddss.metrics                    FID (with the Inception port), KID, IS, precision/recall, statistics
    ddss.data                       the digits, and TFDS image datasets
    ddss.search                     the DDSS loss and step, and the AutoDiffusion genomes and search
    ddss.experiments                what the `ddss` command runs (`ddss --help`)
"""
import importlib

from ddss import models, samplers, schedules
from ddss.export import (EvolvedSampler, LoadedSampler, load_sampler, save_evolved_sampler, save_sampler,
                         save_timesteps_json, timesteps_record)

__version__ = "0.1.0"

_LAZY = ("data", "diagnostics", "experiments", "metrics", "search")


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"ddss.{name}")
    raise AttributeError(f"module 'ddss' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])


__all__ = [
    "EvolvedSampler",
    "LoadedSampler",
    "load_sampler",
    "models",
    "samplers",
    "save_evolved_sampler",
    "save_sampler",
    "save_timesteps_json",
    "schedules",
    "timesteps_record",
]
