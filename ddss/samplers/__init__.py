"""Sampler families. Each module offers `init(schedule, timesteps, ...) -> params` and
`sample(params, eps_fn, x_K, key, *, clip_denoised, remat, return_info) -> x_0`."""
from ddss.samplers import conditioning, ddim, ddpm, dpm_solver, ggdm, guidance, ipndm, loop, skipping, unipc
from ddss.samplers.loop import SampleInfo, raise_if_nonfinite, step_noise

SOLVERS = {"ddpm": ddpm, "ddim": ddim, "dpm_solver++": dpm_solver, "unipc": unipc, "ipndm": ipndm}

__all__ = [
    "conditioning",
    "ddim",
    "ddpm",
    "dpm_solver",
    "ggdm",
    "guidance",
    "ipndm",
    "loop",
    "skipping",
    "unipc",
    "SOLVERS",
    "SampleInfo",
    "raise_if_nonfinite",
    "step_noise",
]
