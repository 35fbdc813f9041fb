"""DDSS: learn GGDM-family samplers by gradient descent on sample quality, then score them against
every training-free baseline on held-out noise.

  ddss --config=digits_ddss --workdir=DIR

For each K in `config.num_steps` and each (family, loss) in `config.learn`, trains a sampler under
DIR/runs/<method>_K<K>/:
  checkpoints/               orbax: learned arrays, Adam state, step, key, best-so-far (exact resume)
  metrics.jsonl, tensorboard/  loss terms, gradient norm, validation value
  sampler.safetensors        the export (`ddss.load_sampler`), the best validation value's parameters (with
                             `init.skips`, a searched-format GGDM file that skips the searched blocks)
  training.json              wall time, network evaluations, device, steps, learning rate, best validation value
then scores the learned samplers and the baselines (`config.methods`, the cached many-step ceiling,
the data floor) on one held-out noise bank, and writes results.json (learned
rows with their training cost), samples/, grids/, fid_vs_k.png and timesteps.png.

Noise: training draws fresh x_K every step (a function of the run's key and step); validation
uses a fixed bank of its own; the final scores use the held-out bank of the baselines, which
training never sees. Kill it at any time: rerunning the same command resumes each run from its
last checkpoint, and finished runs are not retrained.

NaN guard: a step whose loss or gradient is not finite leaves the parameters unchanged; at the next
log point the run stops with an error naming the last good checkpoint (parameters there are finite).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
import time
import zlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tqdm import tqdm

from ddss import export, fields, parallel, schedules
from ddss.experiments import baselines, checkpoints, evaluation, evolution, plots, targets, writers
from ddss.metrics import fid
from ddss.samplers import conditioning, ggdm, skipping
from ddss.search import differentiable

DDSS_KEYS = ("learn", "init", "train", "loss", "reference_features")


@dataclasses.dataclass(frozen=True)
class InitConfig:
    base: str = "dpm_solver++"  # ddim | dpm_solver++
    stride: str = "logsnr"
    eta: float = 0.0
    # ((K, path), ...): start at K from the timesteps of an exported sampler (e.g. a searched one)
    # instead of `stride`'s; the coefficients are still `base`'s on those times.
    timesteps_from: tuple = ()
    # With timesteps_from's searched samplers: also keep each step's skipped blocks, fixed while the
    # coefficients learn. Only for families without +time (a skip set belongs to a step at its searched
    # integer time); the export is then a searched-format file whose skip lists compile statically.
    skips: bool = False

    def __post_init__(self):
        fields.check("init", self, base=fields.STR, stride=fields.STR, eta=fields.NONNEG, skips=fields.BOOL)
        ks = [k for k, _ in self.timesteps_from]
        fields.check_each("init", "timesteps_from's K", ks, fields.INT_POS, unique=True)


def initial_timesteps(init: InitConfig, schedule, k: int) -> np.ndarray:
    """The times a K-step sampler starts from: an export's (init.timesteps_from) or the stride's."""
    path = dict(init.timesteps_from).get(k)
    if not path:
        return schedules.timesteps(schedule, init.stride, k)
    sampler = export.load_sampler(os.path.expanduser(path))
    times = np.asarray(sampler.timesteps if isinstance(sampler, export.EvolvedSampler) else sampler.params.timesteps,
                       np.float64)
    if len(times) != k:
        raise ValueError(f"init.timesteps_from names {path} for K = {k}, but it holds {len(times)} steps.")
    return times


def initial_skips(init: InitConfig, k: int, num_blocks: int) -> np.ndarray | None:
    """The skip mask [K, L] (True = skip) a K-step sampler keeps while learning (init.skips), or None."""
    if not init.skips:
        return None
    path = dict(init.timesteps_from).get(k)
    if not path:
        raise ValueError(f"config.init.skips keeps the skipped blocks of a searched sampler, but "
                         f"config.init.timesteps_from names none for K = {k}: add ({k}, 'DIR/runs/evolution-joint_B{k}/"
                         "sampler.safetensors'), or set config.init.skips=False.")
    if num_blocks == 0:
        raise ValueError("config.init.skips keeps skipped network blocks, but this model has no skippable blocks: "
                         "set config.init.skips=False.")
    sampler = export.load_sampler(os.path.expanduser(path), expect="searched", num_steps=k, num_blocks=num_blocks)
    mask = np.zeros((k, num_blocks), bool)
    for step, skip in enumerate(sampler.skip):
        mask[step, list(skip)] = True
    return mask


def init_record(init: InitConfig) -> dict:
    """init's fields as run.json and results.json record them (`skips` only when set, so a run written
    before the field existed still resumes)."""
    return {k: v for k, v in dataclasses.asdict(init).items() if k != "skips" or v}


VALIDATIONS = ("fid", "teacher")


@dataclasses.dataclass(frozen=True)
class SamplerTrainingConfig:
    """How DDSS optimises a sampler (`config.train`): steps, batch, learning rate, validation, checkpoints."""

    steps: int = 200
    steps_by_k: tuple = ()  # ((K, steps), ...): overrides `steps` for those K
    batch_size: int = 128
    learning_rate: float = 1e-2
    learning_rate_by_k: tuple = ()  # ((K, learning rate), ...): overrides `learning_rate` for those K
    warmup_steps: int = 0
    grad_clip: float = 1.0
    log_every: int = 10
    eval_every: int = 50
    val_samples: int = 500
    checkpoint_every: int = 25
    remat: bool = True
    # What picks the exported parameters: "fid" (the FID of a validation bank in the train space, the
    # paper's) or "teacher" (the mean squared distance to the teacher's solutions of that bank, in the
    # loss's teacher space: a teacher loss's own objective on held-out noise, far less noisy).
    validation: str = "fid"

    def __post_init__(self):
        if self.validation not in VALIDATIONS:
            raise ValueError(f"config.train.validation must be one of {VALIDATIONS}, got {self.validation!r}.")
        fields.check("train", self, steps=fields.INT_POS, batch_size=fields.Rule(int, 2),
                     learning_rate=fields.POSITIVE, warmup_steps=fields.INT_NONNEG, grad_clip=fields.POSITIVE,
                     log_every=fields.INT_POS, eval_every=fields.INT_POS, val_samples=fields.Rule(int, 2),
                     checkpoint_every=fields.INT_POS, remat=fields.BOOL)
        fields.check_each("train", "steps_by_k's K", [k for k, _ in self.steps_by_k], fields.INT_POS, unique=True)
        fields.check_each("train", "steps_by_k's steps", [n for _, n in self.steps_by_k], fields.INT_POS)
        fields.check_each("train", "learning_rate_by_k's K", [k for k, _ in self.learning_rate_by_k], fields.INT_POS,
                          unique=True)
        fields.check_each("train", "learning_rate_by_k's learning rate", [r for _, r in self.learning_rate_by_k],
                          fields.POSITIVE)
        fewest = min([self.steps] + [n for _, n in self.steps_by_k])
        if self.warmup_steps >= fewest:
            raise ValueError(f"config.train.warmup_steps ({self.warmup_steps}) must be below the step count "
                             f"({fewest}): the learning rate would never reach its value.")


@dataclasses.dataclass(frozen=True)
class DDSSConfig:
    base: baselines.BaselinesConfig
    learn: tuple[tuple[str, str], ...]  # (family, loss kind)
    init: InitConfig
    train: SamplerTrainingConfig
    loss: differentiable.LossConfig
    reference_features: str | None = None  # features.npy of the data for the KID loss; None: the model's own

    @classmethod
    def from_config(cls, config) -> "DDSSConfig":
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        fields.check_known("", c, baselines.BaselinesConfig.known(*DDSS_KEYS))
        base = baselines.BaselinesConfig.from_config(ml_collections.ConfigDict(
            {k: v for k, v in c.items() if k not in DDSS_KEYS}))
        learn = tuple(tuple(x) for x in c["learn"])
        if not learn:
            raise ValueError("config.learn is empty: name at least one (family, loss) pair, e.g. "
                             "(('ggdm+pred+time', 'teacher'),).")
        for entry in learn:
            if len(entry) != 2:
                raise ValueError(f"config.learn entries are (family, loss) pairs, got {entry!r}.")
            ggdm.check_family(entry[0])
        if len(set(learn)) != len(learn):
            raise ValueError(f"config.learn lists a (family, loss) pair twice: {learn}; each pair gives one row.")
        init = dict(c.get("init", {}))
        init["timesteps_from"] = tuple((k, str(p)) for k, p in init.get("timesteps_from", ()))
        init = fields.construct(InitConfig, "init", init)
        loss = fields.construct(differentiable.LossConfig, "loss", dict(c.get("loss", {})))
        for _, kind in learn:
            dataclasses.replace(loss, kind=kind)  # an unknown loss fails here
        if c.get("train", {}).get("validation") == "teacher":
            no_teacher = [f"{family}/{kind}" for family, kind in learn
                          if not dataclasses.replace(loss, kind=kind).uses_teacher]
            if no_teacher:
                raise ValueError(f"config.train.validation = 'teacher' measures the distance to the teacher, but "
                                 f"{', '.join(no_teacher)} has no teacher loss: use validation = 'fid' for it "
                                 "(or a 'teacher' / 'kid+teacher' loss).")
        if init.skips:
            timed = [family for family, _ in learn if "+time" in family]
            if timed:
                raise ValueError(f"config.init.skips keeps each searched step's skipped blocks, which belong to the "
                                 f"step's searched integer time, but {', '.join(timed)} learns its times: use a family "
                                 "without +time ('ggdm+pred', 'ggdm' or 'vars') or set config.init.skips=False.")
        if init.base not in ggdm.BASES:
            raise ValueError(f"Unknown init.base {init.base!r}; choose one of {ggdm.BASES}.")
        if init.stride not in schedules.STRIDES:
            raise ValueError(f"Unknown init.stride {init.stride!r}; choose one of {schedules.STRIDES}.")
        train = dict(c.get("train", {}))
        for name, what in (("steps_by_k", "steps"), ("learning_rate_by_k", "learning rate")):
            train[name] = tuple(tuple(pair) for pair in train.get(name, ()))
            for pair in train[name]:
                if len(pair) != 2:
                    raise ValueError(f"config.train.{name} entries are (K, {what}) pairs, got {pair!r}.")
        cfg = cls(base=base, learn=learn, init=init, train=fields.construct(SamplerTrainingConfig, "train", train), loss=loss,
                  reference_features=c.get("reference_features") or None)
        fields.check("", cfg, reference_features=fields.OPT_STR)
        return cfg


def method_name(family: str, loss: str) -> str:
    """results.json name: the family, with the loss when it is not the paper's KID."""
    return family if loss == "kid" else f"{family}-{loss}"


def real_features(cfg: DDSSConfig, target: targets.Target) -> np.ndarray | None:
    """The real-data features the KID loss compares against (float32)."""
    if cfg.reference_features:
        path = os.path.expanduser(cfg.reference_features)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"config.reference_features = {path} does not exist. Write it with the ref_stats experiment and "
                "--config.save_features=True (it is DIR/features.npy).")
        feats = np.load(path, mmap_mode="r")
        return np.asarray(feats, np.float32)
    if target.train.reference_features is not None:
        return np.asarray(target.train.reference_features, np.float32)
    return None


class Trainer:
    """Everything one learned sampler needs: its initial params, jitted step and validation sampler."""

    def __init__(self, cfg: DDSSConfig, target: targets.Target, extractor, reals, family: str, loss_kind: str,
                 k: int, key, pairs=None):
        self.cfg, self.target, self.family, self.k = cfg, target, family, k
        self.steps = dict(cfg.train.steps_by_k).get(k, cfg.train.steps)
        self.learning_rate = dict(cfg.train.learning_rate_by_k).get(k, cfg.train.learning_rate)
        self.loss_cfg = dataclasses.replace(cfg.loss, kind=loss_kind)
        if self.loss_cfg.uses_kid and reals is None:
            raise ValueError("The KID loss needs real-data features: set config.reference_features to a features.npy "
                             "written by the ref_stats experiment with --config.save_features=True.")
        init_t = initial_timesteps(cfg.init, target.schedule, k)
        self.init_params = ggdm.init(target.schedule, init_t, family=family, eta=cfg.init.eta,
                                     base=cfg.init.base if family != "vars" else "ddim")
        clip = cfg.base.clip_denoised
        template = self.init_params
        # Searched skip sets (init.skips): a traced mask per step, found from the step's fixed time.
        self.skip_mask = initial_skips(cfg.init, k, target.num_blocks)
        masks = None if self.skip_mask is None else jnp.asarray(self.skip_mask)
        step_times = np.asarray(template.base_times, np.float64)

        def sample(learned, model_params, batch, key_, **kwargs):
            if masks is None:
                x, eps, _ = evaluation.model_fns(target, model_params, batch)
            else:  # the search's traced-mask network, labels (if any) bound as its fitness binds them
                x, y = conditioning.split(batch)
                eps = skipping.masked_eps(lambda *args: target.apply_skip(*args, y), model_params, step_times, masks)
            return ggdm.sample(template.replace(learned=learned), eps, x, key_, clip_denoised=clip, **kwargs)

        teacher = None
        if self.loss_cfg.uses_teacher:
            teacher = differentiable.teacher_fn(target.schedule, target.apply, self.loss_cfg.teacher_steps,
                                                clip_denoised=clip, stride=self.loss_cfg.teacher_stride)
        loss = differentiable.make_loss(functools.partial(sample, remat=cfg.train.remat), extractor, self.loss_cfg,
                                        teacher)
        # A fixed bank of (x_K, teacher solution) pairs, when the loss has a teacher and the config asks for one.
        self.pairs = pairs if self.loss_cfg.uses_teacher and self.loss_cfg.teacher_pairs else None
        t = cfg.train
        self.optimizer = differentiable.make_optimizer(self.learning_rate, t.grad_clip, self.steps, t.warmup_steps)
        self.reals = None if reals is None else jnp.asarray(reals)  # None: a loss without KID
        self.step = jax.jit(differentiable.make_step(loss, self.optimizer, (t.batch_size,) + tuple(target.image_shape),
                                                     0 if reals is None else len(self.reals), t.batch_size,
                                                     num_classes=target.num_classes),
                            donate_argnums=0)
        # (learned, model params), x_K, key -> (x_0, info): the baselines' sampling signature.
        self.sample = jax.jit(lambda p, x, key_: sample(p[0], p[1], x, key_, return_info=True))
        k_run, k_val, self.k_val_sampler = jax.random.split(key, 3)
        self.run_key = k_run
        self.val_bank = evaluation.labelled(target, np.asarray(jax.random.normal(k_val, (t.val_samples,) +
                                                                       tuple(target.image_shape))), k_val)
        self.extractor, self.teacher = extractor, teacher
        # The measure validation uses, settled by choose_validation() before the first validation.
        self.validation, self.validation_note, self.val_targets, self._chosen = t.validation, None, None, False

    @property
    def val_name(self) -> str:
        """The validation value's name in metrics.jsonl, training.json and the progress bar."""
        return f"val_{self.validation}"

    def choose_validation(self) -> str:
        """Settles the validation measure (deterministically, so a resumed run settles the same way).

        "teacher" measures quality only where the teacher is better than the start. When the start's
        train-space FID on the validation bank is at or below that of the teacher's own solutions (a
        many-step start, as at K = 10 on the digits), moving towards the teacher would make the sampler
        worse, so the run validates by the train-space FID instead and says why (`validation_note`)."""
        if self._chosen:
            return self.validation
        self._chosen = True
        if self.validation != "teacher":
            return self.validation
        solutions = np.asarray(differentiable.teacher_bank(self.teacher, self.target.params, self.val_bank,
                                                           self.cfg.base.batch_size))
        teacher_fid = self._train_space_fid(solutions)
        start_fid = self._train_space_fid(self.generate(self.init_params.learned, self.val_bank, self.k_val_sampler,
                                                        self.cfg.base.batch_size))
        if start_fid <= teacher_fid:
            self.validation = "fid"
            self.validation_note = (f"the start's train-space FID on the validation bank ({start_fid:.4g}) is at or "
                                    f"below the teacher's ({teacher_fid:.4g}): validated by that FID instead of the "
                                    "distance to the teacher")
        else:  # compared in the loss's teacher space: the teacher's side computed once, here
            self.val_targets = self._teacher_space(solutions)
        return self.validation

    def _teacher_space(self, images) -> np.ndarray:
        """Images clipped to [-1, 1] (as the loss compares them), flattened, or their train-space features."""
        images = np.clip(images, -1.0, 1.0)
        if self.loss_cfg.teacher_space == "features":
            b = self.cfg.base.batch_size
            images = np.concatenate([np.asarray(self.extractor(images[i:i + b])) for i in range(0, len(images), b)])
        return images.reshape(len(images), -1)

    def initial_state(self):
        state = differentiable.init_state(self.init_params.learned, self.optimizer, self.run_key)
        # best_learned is a host copy: the state's own arrays are donated to each step.
        return {"state": state, "best_learned": jax.device_get(state.learned),
                "best_fid": jnp.asarray(np.inf, jnp.float32)}

    def generate(self, learned, noise, key, batch_size) -> np.ndarray:
        return evaluation.sample_in_batches(self.sample, (learned, self.target.params), noise, key, batch_size)

    def validate(self, learned) -> float:
        """The validation value of `learned` (lower is better), never in the evaluation space.

        "fid": the FID of the validation bank in the *train* space, on samples quantised as the final
        scores are. "teacher": the mean squared distance between the samples of the validation bank
        and the teacher's solutions of it (clipped to [-1, 1], as the loss compares them), per pixel
        or per feature of the loss's `teacher_space`. Rounded to float32, as checkpoints store it, so
        a run resumed from a checkpoint records the same best value as one that never stopped."""
        samples = self.generate(learned, self.val_bank, self.k_val_sampler, self.cfg.base.batch_size)
        if self.choose_validation() == "teacher":
            diff = (self._teacher_space(samples) - self.val_targets).astype(np.float64)
            return float(np.float32(np.mean(diff**2)))
        return self._train_space_fid(samples)

    def _train_space_fid(self, samples) -> float:
        if self.target.quantize:
            samples = targets.quantize_uint8(samples)
        value = fid.frechet_distance_of(self.target.train.features(samples), *self.target.train.reference_stats)
        return float(np.float32(value))


def check_run_description(trainer: Trainer, rundir: str) -> None:
    """Records what a run directory trains; refuses to resume or reuse it for a different setting."""
    cfg = trainer.cfg
    writers.check_run_description(rundir, {
        "family": trainer.family, "K": trainer.k, "steps": trainer.steps, "loss": dataclasses.asdict(trainer.loss_cfg),
        "init": init_record(cfg.init), "train": dataclasses.asdict(cfg.train), "seed": cfg.base.seed,
        "model": cfg.base.model, "checkpoint": cfg.base.checkpoint, "clip_denoised": cfg.base.clip_denoised,
        "reference_features": cfg.reference_features,
        **({"adm": cfg.base.adm} if cfg.base.model == "adm" else {})}, what="run", redo="retrain it")


def train_one(trainer: Trainer, rundir: str) -> dict:
    """Trains (or resumes) one sampler; exports the best validation parameters; returns its training record."""
    record_path = os.path.join(rundir, "training.json")
    export_path = os.path.join(rundir, "sampler.safetensors")
    check_run_description(trainer, rundir)
    if os.path.exists(record_path) and os.path.exists(export_path):
        try:
            export.load_sampler(export_path)
            with open(record_path) as f:
                return json.load(f)
        except (ValueError, OSError) as error:  # damaged: export again from the run's last checkpoint
            print(f"warning: {export_path} or {record_path} is damaged ({' '.join(str(error).split())[:160]}); "
                  "writing it again from the run's last checkpoint.", file=sys.stderr)
    t, steps = trainer.cfg.train, trainer.steps
    options = ocp.CheckpointManagerOptions(max_to_keep=2)
    mngr = ocp.CheckpointManager(os.path.abspath(os.path.join(rundir, "checkpoints")), options=options)
    ckpt = trainer.initial_state()
    previous = {"wall_time_s": 0.0}
    step, restored = checkpoints.restore_latest(mngr, checkpoints.abstract(ckpt))
    if step is not None:
        ckpt = restored
        progress = os.path.join(rundir, "progress.json")
        if os.path.exists(progress):
            with open(progress) as f:
                previous = json.load(f)
    state, best_learned, best_fid = ckpt["state"], parallel.to_host(ckpt["best_learned"]), float(ckpt["best_fid"])
    start = int(state.step)
    writer = writers.MetricWriter(rundir, keep_through=start if start else -1)  # a resume re-logs later steps
    started = time.time()
    running, last_log = None, start
    desc = f"{method_name(trainer.family, trainer.loss_cfg.kind)} K={trainer.k}"
    try:
        trainer.choose_validation()
        val = trainer.val_name
        if start == 0:  # the initial sampler competes for "best" too: training must beat it on validation
            best_fid = trainer.validate(best_learned)
            writer.write_scalars(0, {val: best_fid})
        with tqdm(total=steps, initial=start, desc=desc, unit="step") as bar:
            for step in range(start, steps):
                state, metrics = trainer.step(state, trainer.target.params, trainer.reals, trainer.pairs)
                running = metrics if running is None else jax.tree.map(jnp.add, running, metrics)
                done = step + 1
                evaluating = done % t.eval_every == 0 or done == steps
                saving = done % t.checkpoint_every == 0 or evaluating
                if done % t.log_every == 0 or saving:  # host reads only here
                    sums = {k: float(v) for k, v in running.items()}
                    if sums["nonfinite"] > 0:
                        mngr.wait_until_finished()
                        last = mngr.latest_step()
                        where = (f"The last good checkpoint is step {last} in {rundir}/checkpoints" if last is not None
                                 else "No checkpoint was written yet, so a rerun starts from the initial sampler")
                        raise FloatingPointError(
                            f"A DDSS step between {last_log} and {done} produced a NaN/inf loss, gradient or update "
                            f"(it was refused). {where}. Lower config.train.learning_rate or config.train.grad_clip and "
                            "run again with a new --workdir.")
                    n = done - last_log
                    means = {k: v / n for k, v in sums.items() if k != "nonfinite"}
                    if evaluating:
                        learned = parallel.to_host(state.learned)
                        means[val] = trainer.validate(learned)
                        if means[val] < best_fid:
                            best_fid, best_learned = means[val], learned
                    writer.write_scalars(done, means)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in means.items() if k in ("loss", val)})
                    running, last_log = None, done
                if saving:
                    mngr.save(done, args=ocp.args.StandardSave(
                        {"state": state, "best_learned": best_learned, "best_fid": jnp.asarray(best_fid, jnp.float32)}),
                        force=True)
                    mngr.wait_until_finished()
                    writers.write_json(os.path.join(rundir, "progress.json"),
                                       {"wall_time_s": previous["wall_time_s"] + time.time() - started}, indent=None)
                bar.update(1)
    finally:
        mngr.wait_until_finished()
        mngr.close()
        writer.close()
    k, b = trainer.k, t.batch_size
    teacher_val = t.validation == "teacher"
    val_evals = (1 + steps // t.eval_every + (steps % t.eval_every != 0)) * t.val_samples * k
    record = {
        "family": trainer.family, "loss": trainer.loss_cfg.kind, "K": k, "steps": steps, "batch_size": b,
        "learning_rate": trainer.learning_rate,
        "wall_time_s": previous["wall_time_s"] + time.time() - started,
        # Each step runs the chain forward, recomputes every network call in the backward pass and
        # back-propagates through it; the teacher adds its own forward passes.
        # (teacher validation also solves the validation bank once and samples the start once more)
        "network_evaluations": {"forward": 2 * k * b * steps + val_evals + teacher_val * k * t.val_samples,
                                "backward": k * b * steps,
                                "teacher_forward": teacher_evaluations(trainer.loss_cfg, b * steps)
                                + teacher_val * trainer.loss_cfg.teacher_steps * t.val_samples},
        "device": jax.devices()[0].device_kind,
        f"best_{trainer.val_name}": best_fid, "validation": trainer.validation, "val_samples": t.val_samples,
        **({"validation_note": trainer.validation_note} if trainer.validation_note else {}),
    }
    final = trainer.init_params.replace(learned=jax.tree.map(np.asarray, best_learned))
    # Wall times stay in training.json: two runs of one configuration write byte-identical exports.
    common = dict(clip_denoised=trainer.cfg.base.clip_denoised, model=evaluation.model_record(trainer.target),
                  info={k_: v for k_, v in record.items() if k_ != "wall_time_s"})
    if trainer.skip_mask is None:
        export.save_sampler(export_path, final, **common)
    else:  # a GGDM at the searched integer times with their skip sets: the searched sampler's format
        export.save_evolved_sampler(export_path, np.asarray(final.base_times), trainer.skip_mask, kind="ggdm",
                                    schedule=trainer.target.schedule, ggdm_params=final, **common)
    writers.write_json(record_path, record)
    parallel.sync("export")  # every process reads the export next
    return record


def teacher_evaluations(loss: differentiable.LossConfig, samples: int) -> int:
    """Teacher network calls a run pays for: per training sample, or once for a shared bank of pairs."""
    if not loss.uses_teacher:
        return 0
    return loss.teacher_steps * (loss.teacher_pairs or samples)


def teacher_pairs(cfg: DDSSConfig, target: targets.Target, key) -> tuple | None:
    """The shared bank of (x_K, teacher solution) pairs, when a teacher loss asks for one (computed once
    per run, before any training, from the run's key: a resumed run recomputes the same bank)."""
    loss = cfg.loss
    if not (loss.teacher_pairs and any("teacher" in kind for _, kind in cfg.learn)):
        return None
    noise = evaluation.labelled(target, jax.random.normal(key, (loss.teacher_pairs,) + tuple(target.image_shape)), key)
    teacher = differentiable.teacher_fn(target.schedule, target.apply, loss.teacher_steps,
                                        clip_denoised=cfg.base.clip_denoised, stride=loss.teacher_stride)
    return noise, differentiable.teacher_bank(teacher, target.params, noise, cfg.base.batch_size)


def run(config, workdir: str) -> dict:
    cfg = DDSSConfig.from_config(config)
    writers.claim_workdir(workdir, config)
    target, noise_bank, key_sampler = evaluation.setup(cfg.base, workdir)
    rows = learned_rows(cfg, target, noise_bank, key_sampler, workdir)
    rows += evaluation.baseline_rows(cfg.base, target, noise_bank, key_sampler, workdir)
    results = evaluation.finish(cfg.base, target, rows, workdir)
    plots.timesteps(rows, target.schedule, cfg.base.methods, os.path.join(workdir, "timesteps.png"))
    return results


def learned_rows(cfg: DDSSConfig, target: targets.Target, noise_bank, key_sampler, workdir: str, *,
                 tag: str = "") -> list[dict]:
    """Trains (or resumes) every (K, family, loss) of the config under DIR/runs/<method><tag>_K<K>/ and
    scores each export on the held-out bank; `tag` tells apart runs of the same method from another start."""
    for k in cfg.base.num_steps:
        schedules.timesteps(target.schedule, "linear", k)  # K out of range fails before any training
    if target.train is None:
        raise ValueError("DDSS scores samples while it learns: set config.features (the feature network) and "
                         "config.reference_stats.")
    extractor = _extractor(cfg)
    reals = real_features(cfg, target)
    key = jax.random.fold_in(evaluation.training_key(cfg.base.seed), 7)  # disjoint from the held-out bank's keys
    pairs = teacher_pairs(cfg, target, jax.random.fold_in(key, 3))
    rows = []
    for k in cfg.base.num_steps:
        for family, loss_kind in cfg.learn:
            method = method_name(family, loss_kind) + tag
            trainer = Trainer(cfg, target, extractor, reals, family, loss_kind, k,
                              jax.random.fold_in(key, zlib.crc32(f"{method}_K{k}".encode())), pairs)
            rundir = os.path.join(workdir, "runs", f"{method}_K{k}")
            os.makedirs(rundir, exist_ok=True)
            record = train_one(trainer, rundir)
            sampler = export.load_sampler(os.path.join(rundir, "sampler.safetensors"), family=family, num_steps=k)
            if isinstance(sampler, export.EvolvedSampler):  # init.skips: scored as deployed, skip lists static
                params, extra = sampler.ggdm_params, dict(
                    sampler="ggdm", skip=[list(s) for s in sampler.skip], block_executions=sampler.block_executions)
                samples, wall = evolution.score_sampler(sampler, target, noise_bank, key_sampler, cfg.base.batch_size)
            else:
                params, extra = sampler.params, {}
                samples, wall = evaluation.timed_samples(trainer.sample, (params.learned, target.params),
                                                         noise_bank, key_sampler, cfg.base.batch_size)
            rows.append(evaluation.score_row(
                target, cfg.base, method, k, samples, wall, workdir, loss=loss_kind,
                init={**init_record(cfg.init), "base": params.base}, **extra,
                timesteps=np.asarray(params.timesteps).tolist(),
                training={k_: record[k_] for k_ in ("wall_time_s", "network_evaluations", "device", "steps",
                                                    "batch_size", "learning_rate", "validation", "validation_note",
                                                    "best_val_fid", "best_val_teacher")
                          if k_ in record},  # (a record written before learning_rate was kept lacks it),
                export=os.path.relpath(os.path.join(rundir, "sampler.safetensors"), workdir)))
    return rows


def _extractor(cfg: DDSSConfig):
    apply, params = targets.feature_network(cfg.base.model, cfg.base.features)
    return lambda x: apply(params, x)
