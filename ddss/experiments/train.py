"""Trains a DDPM UNet with L_simple (Ho et al. 2020) and an EMA of its weights, then scores it.

  ddss --config=digits_train --workdir=DIR

Writes into DIR:
  checkpoints/                    orbax: params, EMA params, optimizer state, step (resumes exactly:
                                  data order and noise are functions of (seed, step))
  metrics.jsonl, tensorboard/     training loss, learning rate, gradient norm
  unet_ema.safetensors            the EMA weights with config and schedule in the metadata
                                  (`ddss.models.pretrained.load` / `ddss.models.digits.load(path)`)
  results.json                    training time, final loss, and rows `ddpm-<T>` (the model's own
                                  T-step ancestral sampler) and `data` (train vs test split), scored
                                  by FID/KID in the digits classifier's feature space
  samples/ddpm-<T>_K<T>.npz, grids/ddpm-<T>.png, grids/data.png
Kill it at any time: rerunning the same command resumes from the last checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

from ddss import fields, parallel, schedules
from ddss.data import digits
from ddss.experiments import checkpoints, plots, targets, writers
from ddss.metrics import features, fid
from ddss.models import pretrained, unet
from ddss.samplers import ddpm, raise_if_nonfinite


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    seed: int
    dataset: str
    model: unet.UNetConfig
    schedule: dict
    steps: int
    batch_size: int
    learning_rate: float
    warmup_steps: int
    grad_clip: float
    ema_decay: float
    log_every: int
    checkpoint_every: int
    eval_samples: int
    eval_batch_size: int

    def __post_init__(self):
        fields.check("", self, seed=fields.INT_NONNEG, dataset=fields.STR, steps=fields.INT_POS,
                     batch_size=fields.INT_POS, learning_rate=fields.POSITIVE, warmup_steps=fields.INT_NONNEG,
                     grad_clip=fields.POSITIVE, ema_decay=fields.Rule(float, 0, 1), log_every=fields.INT_POS,
                     checkpoint_every=fields.INT_POS, eval_samples=fields.INT_NONNEG, eval_batch_size=fields.INT_POS)
        if self.eval_samples == 1:
            raise ValueError("config.eval_samples must be 0 (no scoring) or ≥ 2 (FID needs a covariance), got 1.")

    @classmethod
    def from_config(cls, config) -> "TrainConfig":
        c = config.to_dict()
        fields.check_known("", {k: v for k, v in c.items() if k != "experiment"}, [f.name for f in dataclasses.fields(cls)])
        return cls(**{**{k: c[k] for k in (f.name for f in dataclasses.fields(cls)) if k in c},
                      "model": unet.UNetConfig.from_dict(c["model"]), "schedule": dict(c["schedule"])})


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict
    ema_params: dict
    opt_state: optax.OptState


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    lr = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.steps, cfg.warmup_steps + 1),
                                            end_value=0.1 * cfg.learning_rate)
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adam(lr))


def simple_loss(params, model: unet.UNet, schedule: schedules.Schedule, x0, key):
    """L_simple: E_{t, ε} ||ε − ε̂(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)||², t uniform on {0..T-1}."""
    t_key, eps_key, dropout_key = jax.random.split(key, 3)
    t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_timesteps)
    eps = jax.random.normal(eps_key, x0.shape)
    a = schedules.alpha(schedule, t)[:, None, None, None].astype(x0.dtype)
    s = schedules.sigma(schedule, t)[:, None, None, None].astype(x0.dtype)
    pred = model.apply({"params": params}, a * x0 + s * eps, t, train=True, rngs={"dropout": dropout_key})
    return jnp.mean((pred - eps) ** 2)


def make_train_step(cfg: TrainConfig, schedule: schedules.Schedule, optimizer, base_key):
    model = unet.UNet(cfg.model)

    def train_step(state: TrainState, x0):
        x0 = parallel.constrain_batch(x0, what="training batch (config.batch_size)")  # data-parallel
        key = jax.random.fold_in(base_key, state.step)
        loss, grads = jax.value_and_grad(simple_loss)(state.params, model, schedule, x0, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = jax.tree.map(lambda e, p: cfg.ema_decay * e + (1 - cfg.ema_decay) * p, state.ema_params, params)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        return TrainState(state.step + 1, params, ema, opt_state), metrics

    return jax.jit(train_step, donate_argnums=0)


class DigitsData:
    """Training batches as a pure function of the step: epoch e is `default_rng((seed, e))`'s permutation."""

    def __init__(self, split: str, batch_size: int, seed: int):
        self.images, _ = digits.load(split)
        self.batch_size, self.seed = batch_size, seed
        self.per_epoch = len(self.images) // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"batch_size {batch_size} exceeds the {len(self.images)} digits of split {split!r}.")

    def indices(self, step: int) -> np.ndarray:
        epoch, i = divmod(step, self.per_epoch)
        order = np.random.default_rng((self.seed, epoch)).permutation(len(self.images))
        return order[i * self.batch_size:(i + 1) * self.batch_size]

    def batch(self, step: int) -> np.ndarray:
        return self.images[self.indices(step)]

    def global_batch(self, step: int) -> jax.Array:
        """Step `step`'s batch split over the mesh's data axis, each host reading only its own rows."""
        rows = self.indices(step)
        return parallel.put_rows(lambda a, b: self.images[rows[a:b]], len(rows), pad=False,
                                 what="training batch (config.batch_size)")[0]


def make_data(cfg: TrainConfig):
    name, _, split = cfg.dataset.partition(":")
    if name != "digits":
        raise ValueError(f"Unknown training dataset {cfg.dataset!r}; this experiment trains on 'digits[:split]'.")
    data = DigitsData(split or "all", cfg.batch_size, cfg.seed)
    shape = data.images.shape[1:]
    if shape != (cfg.model.sample_size, cfg.model.sample_size, cfg.model.in_channels):
        raise ValueError(f"Dataset images have shape {shape} but the model takes "
                         f"{(cfg.model.sample_size, cfg.model.sample_size, cfg.model.in_channels)}; fix config.model.")
    return data


def init_state(cfg: TrainConfig, optimizer, key) -> TrainState:
    params = unet.init_params(cfg.model, key)
    return TrainState(jnp.zeros((), jnp.int32), params, jax.tree.map(jnp.copy, params), optimizer.init(params))


def checkpoint_manager(workdir: str, cfg: TrainConfig) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=cfg.checkpoint_every)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), options=options)


def restore_or_init(mngr: ocp.CheckpointManager, cfg: TrainConfig, optimizer, key) -> TrainState:
    """The newest checkpoint's state, restored straight into its (replicated) placement, or a fresh one.
    The structure comes from `jax.eval_shape`: a resumed run never builds the initial parameters, EMA and
    optimizer state it would throw away (about 4× the parameters' memory)."""
    init = lambda: init_state(cfg, optimizer, key)
    step, restored = checkpoints.restore_latest(mngr, checkpoints.abstract(jax.eval_shape(init)))
    # A fresh state is placed as a restored one is, so both compile the same training step.
    return jax.device_put(init(), parallel.replicated()) if step is None else restored


def train(cfg: TrainConfig, workdir: str) -> tuple[TrainState, dict]:
    schedule = pretrained.schedule_from_spec(cfg.schedule)
    data = make_data(cfg)
    optimizer = make_optimizer(cfg)
    key = jax.random.key(cfg.seed)
    mngr = checkpoint_manager(workdir, cfg)
    state = restore_or_init(mngr, cfg, optimizer, jax.random.fold_in(key, 0))
    train_step = make_train_step(cfg, schedule, optimizer, jax.random.fold_in(key, 1))
    start_step = int(state.step)
    writer = writers.MetricWriter(workdir, keep_through=start_step if start_step else -1)
    summary = {"start_step": start_step}
    started = time.time()
    running, last_log = None, start_step
    try:
        with tqdm(total=cfg.steps, initial=start_step, desc="train", unit="step") as bar:
            for step in range(start_step, cfg.steps):
                state, metrics = train_step(state, data.global_batch(step))
                running = metrics if running is None else jax.tree.map(jnp.add, running, metrics)
                done = step + 1
                saving = mngr.should_save(done) or done == cfg.steps
                if done % cfg.log_every == 0 or saving:  # never checkpoint a state whose loss was not checked
                    means = {k: float(v) / (done - last_log) for k, v in running.items()}  # host read: log steps only
                    if not np.isfinite(means["loss"]):
                        mngr.wait_until_finished()
                        raise FloatingPointError(
                            f"Training loss became {means['loss']} by step {done}. The last good checkpoint is step "
                            f"{mngr.latest_step()} in {workdir}/checkpoints; lower config.learning_rate and rerun "
                            "the same command to resume from it.")
                    writer.write_scalars(done, means)
                    summary["final_loss"] = means["loss"]
                    running, last_log = None, done
                    bar.set_postfix(loss=f"{means['loss']:.4f}")
                if saving:
                    mngr.save(done, args=ocp.args.StandardSave(state), force=True)
                bar.update(1)
    finally:
        mngr.wait_until_finished()
        mngr.close()
        writer.close()
    summary["train_time_s"] = time.time() - started
    summary["steps"] = cfg.steps
    return state, summary


def score_rows(samples: np.ndarray, extractor: features.FeatureExtractor, method: str, k: int) -> tuple[dict, dict]:
    """FID/KID of `samples` against all digits, and the data floor (train split vs test split)."""
    feats = extractor.features
    f_all, f_train = feats(digits.load("all")[0]), feats(digits.load("train")[0])
    score = lambda f, ref: {**targets.Space.score_features(f, fid.statistics(ref), ref, num_subsets=100),
                            "feature_space": "digits_classifier"}
    sample_row = {"method": method, "K": k, "nfe": k, "n_samples": len(samples), "heldout": True,
                  **score(feats(targets.quantize_uint8(samples)), f_all)}
    f_test = feats(digits.load("test")[0])
    data_row = {"method": "data", "K": 0, "nfe": 0, "n_samples": len(f_test), "heldout": True,
                **score(f_test, f_train)}
    return sample_row, data_row


def sample_ddpm(model_cfg, params, schedule, n: int, batch_size: int, seed: int) -> np.ndarray:
    """n samples of the model's own sampler: DDPM ancestral on every one of the T steps."""
    t = schedules.timesteps(schedule, "linear", schedule.num_timesteps)
    sampler = ddpm.init(schedule, t, variance="small")
    fn = jax.jit(lambda p, x, key: ddpm.sample(sampler, unet.eps_fn(model_cfg, p), x, key, return_info=True))
    key = jax.random.key(seed)
    shape = (model_cfg.sample_size, model_cfg.sample_size, model_cfg.in_channels)
    out = []
    for start in tqdm(range(0, n, batch_size), desc=f"ddpm-{schedule.num_timesteps} samples"):
        b = min(batch_size, n - start)
        x_k = jax.random.normal(jax.random.fold_in(key, 2 * start), (b, *shape))
        x0, info = fn(params, x_k, jax.random.fold_in(key, 2 * start + 1))
        raise_if_nonfinite(info)
        out.append(np.asarray(x0))
    return np.concatenate(out)


@parallel.main_only
def save_samples(workdir: str, method: str, k: int, samples: np.ndarray) -> None:
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "grids"), exist_ok=True)
    np.savez(os.path.join(workdir, "samples", f"{method}_K{k}.npz"), images=samples)
    plots.sample_grid(samples[:100], os.path.join(workdir, "grids", f"{method}.png"))
    plots.sample_grid(digits.load("all")[0][:100], os.path.join(workdir, "grids", "data.png"))


def run(config, workdir: str) -> dict:
    cfg = TrainConfig.from_config(config)
    writers.claim_workdir(workdir, config)
    state, summary = train(cfg, workdir)
    weights = os.path.join(workdir, "unet_ema.safetensors")
    pretrained.save(weights, cfg.model, jax.device_get(state.ema_params), cfg.schedule,
                    training={"dataset": cfg.dataset, "steps": cfg.steps, "final_loss": summary.get("final_loss")})
    results = {"training": {**summary, "device": jax.devices()[0].device_kind, "num_params": unet.count_params(state.params)},
               "rows": []}
    if cfg.eval_samples > 0:
        schedule = pretrained.schedule_from_spec(cfg.schedule)
        started = time.time()
        samples = sample_ddpm(cfg.model, state.ema_params, schedule, cfg.eval_samples, cfg.eval_batch_size, cfg.seed + 1)
        wall = time.time() - started
        method, k = f"ddpm-{schedule.num_timesteps}", schedule.num_timesteps
        sample_row, data_row = score_rows(samples, features.get("digits"), method, k)
        sample_row.update(wall_time_s=wall, clip_denoised=False)
        results["rows"] = [sample_row, data_row]
        save_samples(workdir, method, k, samples)
    writers.write_json(os.path.join(workdir, "results.json"), results)
    print(json.dumps(results, indent=2))
    return results
