"""DDSS: the loss and the optimiser step that learn a sampler through sample quality (DESIGN.md §4).

Pure functions; the experiment (`ddss.experiments.ddss`) jits, checkpoints and logs them.

Losses (`LossConfig.kind`):
  "kid"          unbiased MMD² with the cubic kernel between features of the generated batch and a
                 batch of precomputed real features (the paper's objective)
  "teacher"      mean squared distance between the K-step output and a many-step solution
                 (DPM-Solver++(2M), `teacher_steps`, λ-uniform) from the *same* x_K, in the feature
                 space (`teacher_space="features"`) or in pixels, per dimension
  "kid+teacher"  kid + teacher_weight · teacher
Samples are clipped to [-1, 1] before the feature network, as for scoring. Gradients reach only the
sampler's learned arrays: the pretrained network and the feature network are constants.

The step refuses a non-finite update (parameters and optimiser state stay as they were) and counts
it in `metrics["nonfinite"]`; the experiment reads that at its log points and stops.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from ddss import schedules
from ddss.metrics import kid
from ddss.samplers import dpm_solver

LOSSES = ("kid", "teacher", "kid+teacher")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    kind: str = "kid"
    teacher_weight: float = 1.0
    teacher_space: str = "features"
    teacher_steps: int = 20

    def __post_init__(self):
        if self.kind not in LOSSES:
            raise ValueError(f"Unknown DDSS loss {self.kind!r}; choose one of {LOSSES}.")
        if self.teacher_space not in ("features", "pixels"):
            raise ValueError(f"teacher_space must be 'features' or 'pixels', got {self.teacher_space!r}.")

    @property
    def uses_kid(self) -> bool:
        return "kid" in self.kind

    @property
    def uses_teacher(self) -> bool:
        return "teacher" in self.kind


@flax.struct.dataclass
class DDSSState:
    step: jax.Array
    learned: dict
    opt_state: Any
    key: jax.Array  # raw key data (uint32), so checkpoints hold plain arrays


def teacher_fn(schedule: schedules.Schedule, apply: Callable, steps: int, *, clip_denoised: bool):
    """(model_params, x_K) -> the many-step DPM-Solver++(2M) solution from x_K."""
    params = dpm_solver.init(schedule, schedules.timesteps(schedule, "logsnr", steps), order=2)
    return lambda mp, x: dpm_solver.sample(params, lambda x_, t_: apply(mp, x_, t_), x, None,
                                           clip_denoised=clip_denoised)


def make_loss(sample: Callable, features: Callable, cfg: LossConfig, teacher: Callable | None = None):
    """loss(learned, model_params, x_K, key, real_features) -> (scalar, {term: value}).

    `sample(learned, model_params, x_K, key)` runs the sampler; `features(images)` is jittable.
    """
    if cfg.uses_teacher and teacher is None:
        raise ValueError("A teacher loss needs a teacher sampler (ddss.search.ddss.teacher_fn).")

    def loss(learned, model_params, x_K, key, real_features):
        images = jnp.clip(sample(learned, model_params, x_K, key), -1.0, 1.0)
        feats = features(images)
        terms = {}
        if cfg.uses_kid:
            terms["kid"] = kid.mmd2(feats, real_features)
        if cfg.uses_teacher:
            target = jax.lax.stop_gradient(jnp.clip(teacher(model_params, x_K), -1.0, 1.0))
            if cfg.teacher_space == "features":
                diff = feats - jax.lax.stop_gradient(features(target))
            else:
                diff = (images - target).reshape(images.shape[0], -1)
            terms["teacher"] = jnp.mean(diff**2)
        total = terms.get("kid", 0.0) + cfg.teacher_weight * terms.get("teacher", 0.0)
        return total, terms

    return loss


def make_optimizer(learning_rate: float, grad_clip: float, steps: int, warmup_steps: int = 0):
    """Adam with global-norm clipping; learning rate warms up linearly, then cosine-decays to 10%."""
    lr = optax.warmup_cosine_decay_schedule(0.0 if warmup_steps else learning_rate, learning_rate, warmup_steps,
                                            max(steps, warmup_steps + 1), end_value=0.1 * learning_rate)
    return optax.chain(optax.clip_by_global_norm(grad_clip), optax.adam(lr))


def init_state(learned: dict, optimizer, key: jax.Array) -> DDSSState:
    learned = jax.tree_util.tree_map(jnp.asarray, learned)
    return DDSSState(step=jnp.zeros((), jnp.int32), learned=learned, opt_state=optimizer.init(learned),
                     key=jax.random.key_data(key))


def make_step(loss: Callable, optimizer, noise_shape: tuple[int, ...], num_real: int, real_batch: int):
    """step(state, model_params, real_features) -> (state, metrics): fresh noise and a fresh real batch
    each step, both functions of (state.key, state.step), so a resumed run repeats them exactly."""

    def step(state: DDSSState, model_params, real_features):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
        k_noise, k_sampler, k_real = jax.random.split(key, 3)
        x_K = jax.random.normal(k_noise, noise_shape)
        real = real_features[jax.random.choice(k_real, num_real, (real_batch,), replace=num_real < real_batch)]
        (value, terms), grads = jax.value_and_grad(loss, has_aux=True)(state.learned, model_params, x_K, k_sampler,
                                                                        real)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.learned)
        learned = optax.apply_updates(state.learned, updates)
        checked = jax.tree.leaves(grads) + jax.tree.leaves(learned)  # a NaN learning rate shows up only here
        finite = jnp.isfinite(value) & jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in checked]))
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        state = DDSSState(step=state.step + 1, learned=keep(learned, state.learned),
                          opt_state=keep(opt_state, state.opt_state), key=state.key)
        metrics = {"loss": jnp.where(finite, value, 0.0), **{k: jnp.where(finite, v, 0.0) for k, v in terms.items()},
                   "grad_norm": jnp.where(finite, optax.tree.norm(grads), 0.0),
                   "nonfinite": 1.0 - finite.astype(jnp.float32)}
        return state, metrics

    return step
