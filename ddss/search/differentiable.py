"""DDSS: the loss and the optimiser step that learn a sampler through sample quality.

Pure functions; the experiment (`ddss.experiments.learn`) jits, checkpoints and logs them.

Losses (`LossConfig.kind`):
  "kid"          unbiased MMD² with the cubic kernel between features of the generated batch and a
                 batch of precomputed real features (the paper's objective)
  "teacher"      mean squared distance between the K-step output and a many-step solution
                 (DPM-Solver++(2M), `teacher_steps` on the `teacher_stride` grid) from the *same* x_K, in the feature
                 space (`teacher_space="features"`) or in pixels, per dimension
  "kid+teacher"  kid + teacher_weight · teacher
With `teacher_pairs = N > 0` the teacher runs once, before training, on a fixed bank of N noise
draws (`teacher_bank`), and each step draws its batch of (x_K, teacher solution) pairs from that bank
instead of fresh noise: the teacher's cost is paid once and shared by every K and family.
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

from ddss import fields, parallel, schedules
from ddss.metrics import kid
from ddss.samplers import conditioning, dpm_solver

LOSSES = ("kid", "teacher", "kid+teacher")


@dataclasses.dataclass(frozen=True)
class LossConfig:
    kind: str = "kid"
    teacher_weight: float = 1.0
    teacher_space: str = "features"
    teacher_steps: int = 20
    teacher_stride: str = "logsnr"  # the teacher's time grid (ddss.schedules.STRIDES)
    teacher_pairs: int = 0  # 0: a fresh teacher solution every step; N: a fixed bank of N pairs

    def __post_init__(self):
        if self.kind not in LOSSES:
            raise ValueError(f"Unknown DDSS loss {self.kind!r}; choose one of {LOSSES}.")
        if self.teacher_space not in ("features", "pixels"):
            raise ValueError(f"teacher_space must be 'features' or 'pixels', got {self.teacher_space!r}.")
        if self.teacher_stride not in schedules.STRIDES:
            raise ValueError(f"config.loss.teacher_stride must be one of {schedules.STRIDES}, got {self.teacher_stride!r}.")
        fields.check("loss", self, teacher_weight=fields.NONNEG, teacher_steps=fields.INT_POS,
                     teacher_pairs=fields.INT_NONNEG)
        if self.uses_teacher and self.kind != "teacher" and self.teacher_weight == 0:
            raise ValueError(f"config.loss.teacher_weight = 0 turns the teacher off in {self.kind!r}: use kind='kid'.")

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


def teacher_fn(schedule: schedules.Schedule, apply: Callable, steps: int, *, clip_denoised: bool,
               stride: str = "logsnr"):
    """(model_params, x_K) -> the many-step DPM-Solver++(2M) solution from x_K, on the `stride` grid."""
    params = dpm_solver.init(schedule, schedules.timesteps(schedule, stride, steps), order=2)
    def teacher(mp, batch):  # batch: x_K, or conditioning.Labelled(x_K, labels)
        x, y = conditioning.split(batch)
        return dpm_solver.sample(params, lambda x_, t_: apply(mp, x_, t_, y), x, None, clip_denoised=clip_denoised)

    return teacher


def teacher_bank(teacher: Callable, model_params, noise: jax.Array, batch_size: int) -> jax.Array:
    """The teacher's solutions from each row of `noise`, clipped to [-1, 1] (computed batch by batch)."""
    run = jax.jit(lambda mp, x: jnp.clip(teacher(mp, x), -1.0, 1.0))
    return jnp.concatenate([run(model_params, noise[i:i + batch_size]) for i in range(0, len(noise), batch_size)])


def make_loss(sample: Callable, features: Callable, cfg: LossConfig, teacher: Callable | None = None):
    """loss(learned, model_params, x_K, key, real_features, teacher_target=None) -> (scalar, {term: value}).

    `sample(learned, model_params, x_K, key)` runs the sampler; `features(images)` is jittable. A
    teacher loss compares with `teacher_target` when given (a precomputed solution from the same x_K),
    else runs `teacher(model_params, x_K)`.
    """
    if cfg.uses_teacher and teacher is None:
        raise ValueError("A teacher loss needs a teacher sampler (ddss.search.differentiable.teacher_fn).")

    def loss(learned, model_params, x_K, key, real_features, teacher_target=None):
        images = jnp.clip(sample(learned, model_params, x_K, key), -1.0, 1.0)
        feats = features(images)
        terms = {}
        if cfg.uses_kid:
            terms["kid"] = kid.mmd2(feats, real_features)
        if cfg.uses_teacher:
            if teacher_target is None:
                teacher_target = jnp.clip(teacher(model_params, x_K), -1.0, 1.0)
            target = jax.lax.stop_gradient(teacher_target)
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


def make_step(loss: Callable, optimizer, noise_shape: tuple[int, ...], num_real: int = 0, real_batch: int = 0,
              num_classes: int = 0):
    """step(state, model_params, real_features, pairs=None) -> (state, metrics): fresh noise and a fresh
    real batch each step, both functions of (state.key, state.step), so a resumed run repeats them
    exactly. With `pairs = (noise [N, ...], teacher solutions [N, ...])` the step's noise and teacher
    targets are a random batch of those pairs instead. A loss without KID needs no real data:
    pass `real_features=None` (and leave `num_real`, `real_batch` at 0). With `num_classes` > 0 each
    step's noise comes with labels drawn uniformly at random (`conditioning.Labelled`)."""

    def step(state: DDSSState, model_params, real_features, pairs=None):
        key = jax.random.fold_in(jax.random.wrap_key_data(state.key), state.step)
        k_noise, k_sampler, k_real = jax.random.split(key, 3)
        target = None
        if pairs is None:
            x_K = jax.random.normal(k_noise, noise_shape)
            if num_classes:
                x_K = conditioning.Labelled(x_K, jax.random.randint(jax.random.fold_in(k_noise, 1), noise_shape[:1],
                                                                    0, num_classes))
        else:
            n = len(pairs[0])
            idx = jax.random.choice(k_noise, n, (noise_shape[0],), replace=n < noise_shape[0])
            x_K, target = pairs[0][idx], pairs[1][idx]
        x_K = parallel.constrain_batch(x_K, what="DDSS batch (config.train.batch_size)")  # data-parallel
        real = None if real_features is None else real_features[
            jax.random.choice(k_real, num_real, (real_batch,), replace=num_real < real_batch)]
        (value, terms), grads = jax.value_and_grad(loss, has_aux=True)(state.learned, model_params, x_K, k_sampler,
                                                                        real, target)
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
