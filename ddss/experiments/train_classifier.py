"""Trains a digits feature network and reports its held-out accuracy.

  ddss --config=digits_classifier --workdir=DIR      (the loss network)
  ddss --config=digits_eval_features --workdir=DIR   (the evaluation network)

`config.architecture` picks the network (`ARCHITECTURES`):
  "conv"  `ddss.models.classifier` (the default): the feature network the DDSS loss and search use;
          writes DIR/digits_classifier.safetensors.
  "mlp"   `ddss.models.eval_net`: the independent evaluation network no loss uses;
          writes DIR/digits_eval_features.safetensors.
`config.split` picks the train/held-out split of the 1797 digits:
  "standard"    (the default) `ddss.data.digits`' fixed "train" (1437) / "test" (360) split;
  "stratified"  `stratified_split(labels, config.test_fraction, config.split_seed)`: per class, a
                seeded permutation of its indices, the first round(test_fraction · n_class) held out.
Training uses ±`max_shift`-pixel random shifts and AdamW on a cosine schedule. Writes
  DIR/<kind>.safetensors   the weights, with the model config, the training config (including the
                           split and its held-out indices) and the results in the file's metadata
  DIR/results.json         accuracies (held-out part, training part, and for a non-standard split
                           also the standard test split, which then overlaps the training part),
                           the train-vs-held-out FID floor in the network's own features, the
                           training time
The shipped `ddss/models/assets/digits_classifier.safetensors` and
`ddss/models/assets/digits_eval_features.safetensors` are made by those two configs.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from ddss import fields
from ddss.experiments import writers
from ddss.data import digits
from ddss.metrics import fid
from ddss.models import classifier, eval_net, params_io


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A trainable digits feature network: its config class, Flax module and weight-file kind."""

    kind: str  # the weight file's metadata "kind" and file stem
    config_cls: Any
    module_cls: Any
    init_params: Callable
    features_fn: Callable
    logits_fn: Callable


ARCHITECTURES = {
    "conv": Architecture("digits_classifier", classifier.ClassifierConfig, classifier.Classifier,
                         classifier.init_params, classifier.features_fn, classifier.logits_fn),
    "mlp": Architecture("digits_eval_features", eval_net.EvalNetConfig, eval_net.EvalNet,
                        eval_net.init_params, eval_net.features_fn, eval_net.logits_fn),
}
SPLITS = ("standard", "stratified")


@dataclasses.dataclass(frozen=True)
class ClassifierTrainConfig:
    seed: int
    model: Any  # classifier.ClassifierConfig or eval_net.EvalNetConfig, per `architecture`
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    max_shift: int
    architecture: str = "conv"
    split: str = "standard"
    split_seed: int = 0  # "stratified" only
    test_fraction: float = 0.2  # "stratified" only

    def __post_init__(self):
        fields.check("", self, seed=fields.INT_NONNEG, epochs=fields.INT_POS, batch_size=fields.INT_POS,
                     learning_rate=fields.POSITIVE, weight_decay=fields.NONNEG, max_shift=fields.INT_NONNEG,
                     split_seed=fields.INT_NONNEG)

    @property
    def arch(self) -> Architecture:
        return ARCHITECTURES[self.architecture]

    @classmethod
    def from_config(cls, config) -> "ClassifierTrainConfig":
        fields.check_known("", config, [f.name for f in dataclasses.fields(cls)] + ["experiment"])
        architecture = config.get("architecture", "conv")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"Unknown classifier architecture {architecture!r}; choose one of {sorted(ARCHITECTURES)}.")
        split = config.get("split", "standard")
        if split not in SPLITS:
            raise ValueError(f"Unknown classifier split {split!r}; choose one of {SPLITS}.")
        test_fraction = float(config.get("test_fraction", 0.2))
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
        model = ARCHITECTURES[architecture].config_cls.from_dict(config.model.to_dict())
        return cls(seed=config.seed, model=model, epochs=config.epochs, batch_size=config.batch_size,
                   learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                   max_shift=config.max_shift, architecture=architecture, split=split,
                   split_seed=int(config.get("split_seed", 0)), test_fraction=test_fraction)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices), both sorted: for each class c in ascending order, its indices
    (in the given order) permuted by `np.random.default_rng((seed, c))`; the first
    round(test_fraction · n_c) of them are held out, the rest train. Depends on numpy's PCG64 only."""
    labels = np.asarray(labels)
    held = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = np.random.default_rng((seed, int(c))).permutation(len(members))
        held.append(members[order[:int(round(test_fraction * len(members)))]])
    held = np.sort(np.concatenate(held))
    train = np.setdiff1d(np.arange(len(labels)), held)
    return train, held


def split_indices(cfg: ClassifierTrainConfig, labels_all: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices into the 1797 digits ("all" order) for the config's split."""
    if cfg.split == "standard":
        return digits.split_indices("train"), digits.split_indices("test")
    return stratified_split(labels_all, cfg.test_fraction, cfg.split_seed)


def random_shift(key, images, max_shift: int):
    """Shifts each image by up to ±max_shift pixels, filling with the background value -1."""
    if max_shift == 0:
        return images
    b, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (max_shift,) * 2, (max_shift,) * 2, (0, 0)), constant_values=-1.0)
    offsets = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)
    crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))
    return jax.vmap(crop)(padded, offsets)


def make_train_step(cfg: ClassifierTrainConfig, optimizer):
    model = cfg.arch.module_cls(cfg.model)

    def loss_fn(params, images, labels, key):
        logits = model.apply({"params": params}, images, train=True, rngs={"dropout": key})
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def train_step(params, opt_state, images, labels, key):
        shift_key, dropout_key = jax.random.split(key)
        images = random_shift(shift_key, images, cfg.max_shift)
        loss, grads = jax.value_and_grad(loss_fn)(params, images, labels, dropout_key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return jax.jit(train_step, donate_argnums=(0, 1))


def accuracy(cfg, params, images, labels) -> float:
    """Top-1 accuracy; `cfg` is the model config (its class picks the architecture)."""
    logits_fn = next(a.logits_fn for a in ARCHITECTURES.values() if isinstance(cfg, a.config_cls))
    logits = jax.jit(logits_fn(cfg, params))(images)
    return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def run(config, workdir: str) -> dict:
    cfg = ClassifierTrainConfig.from_config(config)
    arch = cfg.arch
    writers.claim_workdir(workdir, config)
    all_x, all_y = digits.load("all")
    train_idx, test_idx = split_indices(cfg, all_y)
    train_x, train_y = all_x[train_idx], all_y[train_idx]
    test_x, test_y = all_x[test_idx], all_y[test_idx]
    key = jax.random.key(cfg.seed)
    params = arch.init_params(cfg.model, jax.random.fold_in(key, 0))
    steps_per_epoch = len(train_y) // cfg.batch_size
    schedule = optax.cosine_decay_schedule(cfg.learning_rate, cfg.epochs * steps_per_epoch)
    optimizer = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    opt_state = optimizer.init(params)
    train_step = make_train_step(cfg, optimizer)
    batches = digits.index_batches(len(train_y), cfg.batch_size, cfg.seed, num_epochs=cfg.epochs)
    start = time.time()
    for step, idx in enumerate(tqdm(batches, total=cfg.epochs * steps_per_epoch, desc=arch.kind)):
        params, opt_state, loss = train_step(params, opt_state, train_x[idx], train_y[idx],
                                             jax.random.fold_in(key, step + 1))
    train_time = time.time() - start
    features = jax.jit(arch.features_fn(cfg.model, params))
    floor = fid.frechet_distance(*fid.statistics(np.asarray(features(train_x))),
                                 *fid.statistics(np.asarray(features(test_x))))
    results = {
        "test_accuracy": accuracy(cfg.model, params, test_x, test_y),
        "train_accuracy": accuracy(cfg.model, params, train_x, train_y),
        "n_train": int(len(train_y)), "n_test": int(len(test_y)),
        "fid_train_vs_test": float(floor), "final_loss": float(loss), "train_time_s": train_time,
        "device": jax.devices()[0].device_kind, "seed": cfg.seed, "split": cfg.split,
    }
    if cfg.split != "standard":
        # The standard test split is not held out from this network: report how much of it it trained on.
        std = digits.split_indices("test")
        unseen = np.setdiff1d(std, train_idx)
        results.update({
            "split_seed": cfg.split_seed, "test_fraction": cfg.test_fraction,
            "standard_test_accuracy": accuracy(cfg.model, params, all_x[std], all_y[std]),
            "standard_test_in_train": int(len(std) - len(unseen)),
            "standard_test_unseen_accuracy": accuracy(cfg.model, params, all_x[unseen], all_y[unseen]),
            "n_standard_test_unseen": int(len(unseen)),
        })
    training = dict(cfg.to_dict(), heldout_indices=[int(i) for i in test_idx])
    params_io.save(os.path.join(workdir, f"{arch.kind}.safetensors"), params,
                   {"kind": arch.kind, "config": cfg.model.to_dict(), "results": results, "training": training})
    writers.write_json(os.path.join(workdir, "results.json"), results)
    print(json.dumps(results, indent=2))
    return results
