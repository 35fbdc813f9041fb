"""Trains the digits feature network (`ddss.models.classifier`) and reports its held-out accuracy.

  python -m ddss.main --config=configs/digits_classifier.py --workdir=DIR

Trains on the digits "train" split (1437 images) with ±1-pixel random shifts, measures accuracy on
the "test" split (360 images it never saw), and writes
  DIR/digits_classifier.safetensors   the weights, with the config in the file's metadata
  DIR/results.json                    accuracies, the data-vs-data FID floor (train vs test split
                                      features), the training time
The shipped weights are `ddss/models/assets/digits_classifier.safetensors`, made by this config.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from ddss.data import digits
from ddss.metrics import fid
from ddss.models import classifier, params_io


@dataclasses.dataclass(frozen=True)
class ClassifierTrainConfig:
    seed: int
    model: classifier.ClassifierConfig
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    max_shift: int

    @classmethod
    def from_config(cls, config) -> "ClassifierTrainConfig":
        return cls(seed=config.seed, model=classifier.ClassifierConfig.from_dict(config.model.to_dict()),
                   epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                   weight_decay=config.weight_decay, max_shift=config.max_shift)


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
    model = classifier.Classifier(cfg.model)

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


def accuracy(cfg: classifier.ClassifierConfig, params, images, labels) -> float:
    logits = jax.jit(classifier.logits_fn(cfg, params))(images)
    return float(np.mean(np.argmax(np.asarray(logits), -1) == labels))


def run(config, workdir: str) -> dict:
    cfg = ClassifierTrainConfig.from_config(config)
    os.makedirs(workdir, exist_ok=True)
    train_x, train_y = digits.load("train")
    test_x, test_y = digits.load("test")
    key = jax.random.key(cfg.seed)
    params = classifier.init_params(cfg.model, jax.random.fold_in(key, 0))
    steps_per_epoch = len(train_y) // cfg.batch_size
    schedule = optax.cosine_decay_schedule(cfg.learning_rate, cfg.epochs * steps_per_epoch)
    optimizer = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    opt_state = optimizer.init(params)
    train_step = make_train_step(cfg, optimizer)
    batches = digits.index_batches(len(train_y), cfg.batch_size, cfg.seed, num_epochs=cfg.epochs)
    start = time.time()
    for step, idx in enumerate(tqdm(batches, total=cfg.epochs * steps_per_epoch, desc="classifier")):
        params, opt_state, loss = train_step(params, opt_state, train_x[idx], train_y[idx],
                                             jax.random.fold_in(key, step + 1))
    train_time = time.time() - start
    features = jax.jit(classifier.features_fn(cfg.model, params))
    floor = fid.frechet_distance(*fid.statistics(np.asarray(features(train_x))),
                                 *fid.statistics(np.asarray(features(test_x))))
    results = {
        "test_accuracy": accuracy(cfg.model, params, test_x, test_y),
        "train_accuracy": accuracy(cfg.model, params, train_x, train_y),
        "n_train": int(len(train_y)), "n_test": int(len(test_y)),
        "fid_train_vs_test": float(floor), "final_loss": float(loss), "train_time_s": train_time,
        "device": jax.devices()[0].device_kind,
    }
    params_io.save(os.path.join(workdir, "digits_classifier.safetensors"), params,
                   {"kind": "digits_classifier", "config": cfg.model.to_dict(), "results": results})
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))
    return results
