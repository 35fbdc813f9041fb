"""Sampling at integer timesteps with per-step skipped blocks: the searched samplers' runtime.

A searched sampler is a solver (`SAMPLERS`: DDIM, DPM-Solver++(2M), UniPC-bh2 of order 2 or 3, or a
GGDM whose learned coefficients move with its times) run at K integer timesteps τ_K > ... > τ_1, where step k skips a
set of the network's blocks. Two ways to honour the skip sets:

- `masked_eps`: a traced boolean mask [K, L]; every block runs and the skipped outputs are discarded,
  so one compiled program serves every mask (the search's evaluator vmaps over it);
- `static_eps`: static skip lists; steps with the same list share one `lax.switch` branch and the
  skipped blocks are not computed (the deployed sampler, `ddss.load_sampler`).

A model call finds its step from its time (`step_index`): the timesteps are distinct integers and
every solver calls the network once per step at that step's time, so the match is exact.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ddss.samplers import ddim, dpm_solver, ggdm, loop, unipc


SAMPLERS = ("ddim", "dpm_solver++", "unipc", "unipc3", "ggdm")  # unipc: UniPC-bh2 of order 2; unipc3: order 3


def check_sampler(kind: str, template: ggdm.GGDMParams | None = None) -> None:
    if kind not in SAMPLERS:
        raise ValueError(f"Unknown sampler {kind!r} for the search; choose one of {SAMPLERS}.")
    if kind == "ggdm" and template is not None and "time_logits" in template.learned:
        raise ValueError(f"A {template.family} sampler learns its own times, so its timesteps cannot be searched: "
                         "use a GGDM family without +time.")


def sample_at(kind: str, schedule, timesteps, eps_fn, x_K, key, *, clip_denoised: bool,
              template: ggdm.GGDMParams | None = None, return_info: bool = False):
    """Samples with `kind` at `timesteps` (may be traced: one compilation serves every genome of a K).

    "ggdm" keeps `template`'s learned coefficients (offsets from its base solver, which moves with
    the times) and replaces its times; without a template it is the DPM-Solver++(2M) GGDM."""
    # Concrete times stay float64 numpy (the samplers check their values); traced ones run in float32.
    t = np.asarray(timesteps, np.float64) if loop.is_concrete(timesteps) else jnp.asarray(timesteps, jnp.float32)
    kwargs = dict(clip_denoised=clip_denoised, return_info=return_info)
    if kind == "ddim":
        return ddim.sample(ddim.init(schedule, t, eta=0.0), eps_fn, x_K, key, **kwargs)
    if kind == "dpm_solver++":
        return dpm_solver.sample(dpm_solver.init(schedule, t, order=2), eps_fn, x_K, key, **kwargs)
    if kind in ("unipc", "unipc3"):
        return unipc.sample(unipc.init(schedule, t, order=3 if kind == "unipc3" else 2), eps_fn, x_K, key, **kwargs)
    if template is None:
        raise ValueError("sampler='ggdm' needs its GGDM parameters (a template with the searched K).")
    if template.num_steps != np.shape(t)[0]:
        raise ValueError(f"The GGDM sampler has K = {template.num_steps} steps; a genome has {np.shape(t)[0]}. "
                         "GGDM searches need a fixed K (min_steps = max_steps = the sampler's K).")
    return ggdm.sample(template.replace(base_times=t), eps_fn, x_K, key, **kwargs)


def step_index(timesteps, t) -> jax.Array:
    """Which step a model call belongs to, from its time: the nearest of the genome's timesteps.

    Samplers call the network once per step at that step's time, and a genome's timesteps are
    distinct integers, so the nearest one is exact for every sampler family."""
    t0 = jnp.reshape(t, (-1,))[0]
    return jnp.argmin(jnp.abs(jnp.asarray(timesteps, t0.dtype) - t0))


def masked_eps(apply_skip, model_params, timesteps, masks):
    """ε(x, t) that skips masks[k] (traced [K, L]) at step k: every block is computed and the
    skipped ones' outputs discarded, so any mask runs through one compiled program."""
    def eps(x, t):
        return apply_skip(model_params, x, t, masks[step_index(timesteps, t)], ())
    return eps


def static_eps(eps_fn, timesteps, skip_lists: Sequence[Sequence[int]]):
    """ε(x, t) that skips the static block list of each step: steps with the same list share one
    branch of a `lax.switch`, so skipped blocks are not computed at all. `eps_fn(x, t, skip)` takes
    the static tuple `skip`."""
    unique = sorted(set(tuple(s) for s in skip_lists))
    if len(unique) == 1:
        return lambda x, t: eps_fn(x, t, unique[0])
    branch_of_step = np.asarray([unique.index(tuple(s)) for s in skip_lists], np.int32)
    branches = [lambda x, t, s=s: eps_fn(x, t, s) for s in unique]
    t_steps = np.asarray(timesteps, np.float64)

    def eps(x, t):
        return jax.lax.switch(jnp.asarray(branch_of_step)[step_index(t_steps, t)], branches, x, t)
    return eps


def skip_lists(skip_mask) -> tuple[tuple[int, ...], ...]:
    """Per step, the indices of the blocks a bool mask [K, L] skips (the static form `static_eps` takes)."""
    return tuple(tuple(int(i) for i in np.flatnonzero(row)) for row in np.asarray(skip_mask, bool))


def check_timesteps(timesteps, skip_mask, num_timesteps: int) -> None:
    """Raises ValueError unless `timesteps` [K] are distinct integers in [0, T−1], noisiest first, and
    `skip_mask` is a bool [K, L] (row k: the blocks step k skips)."""
    t, s = np.asarray(timesteps), np.asarray(skip_mask)
    if t.ndim != 1 or len(t) < 1:
        raise ValueError(f"timesteps must be a non-empty 1-D list, got shape {t.shape}.")
    if not np.all(np.isfinite(t)) or np.any(t != np.round(t)):
        raise ValueError(f"searched timesteps must be integers, got {t.tolist()}.")
    if t.min() < 0 or t.max() > num_timesteps - 1:
        raise ValueError(f"timesteps {t.tolist()} fall outside the model's [0, {num_timesteps - 1}].")
    if np.any(np.diff(t) >= 0):
        raise ValueError(f"timesteps {t.tolist()} are not distinct and strictly decreasing (noisiest first).")
    if s.ndim != 2 or s.shape[0] != len(t) or s.dtype != bool:
        raise ValueError(f"the skip mask must be bool [K = {len(t)}, L], got {s.dtype} {s.shape}.")
