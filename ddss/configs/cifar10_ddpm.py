"""Training-free baselines on DDPM CIFAR-10, from your diffusers checkpoint directory.

The model is Ho et al.'s `google/ddpm-cifar10-32`, through the diffusers converter.

  huggingface-cli download google/ddpm-cifar10-32 --local-dir ~/ckpt/ddpm-cifar10-32
  ddss --config=ref_stats_cifar10 --workdir=~/stats/cifar10_train
  ddss --config=cifar10_ddpm --workdir=/tmp/cifar10_ddpm \
      --config.checkpoint=~/ckpt/ddpm-cifar10-32 --config.reference_stats=~/stats/cifar10_train/stats.npz

Writes samples, grids and results.json rows for every method and K, scored by FID and Inception
Score in pytorch-fid's Inception space (weights: see `ddss.metrics.inception`; kid is null, since a
statistics file holds no features). `--config.features.name=""` skips scoring and only saves the
samples. Clipping of x̂_0 is on, as in the DDPM reference sampler.

`config.features` is the train space (what DDSS's loss and the search's fitness use);
`config.eval_features` with `config.eval_reference_stats` is the evaluation space of the headline
FID, precision and recall. Left empty, the evaluation space is the train space, and results.json and
the printed table say that the scores are not independent of the objectives. For a learned or
searched sampler, pick a different network there (its statistics from ddss/configs/ref_stats_folder.py or
ref_stats_cifar10.py with the same `features` block). Inception weights other than pytorch-fid's
file are refused unless asked for: `--config.features.weights=PATH --config.features.check_hash=False`.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "baselines"
    config.model = "diffusers"
    config.checkpoint = config_dict.placeholder(str)  # required: the diffusers checkpoint directory
    config.seed = 0
    config.num_steps = (5, 10, 20)
    config.methods = ("ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-logsnr")
    config.reference_steps = 1000
    config.num_samples = 10000
    config.batch_size = 250
    config.clip_denoised = True
    config.features = ml_collections.ConfigDict({"name": "inception", "weights": "", "output": "pool",
                                                 "check_hash": True, "batch_size": 50})
    config.reference_stats = config_dict.placeholder(str)  # required for scoring: stats.npz from ddss/configs/ref_stats_cifar10.py
    config.eval_features = ml_collections.ConfigDict({"name": "", "weights": "", "output": "pool", "check_hash": True,
                                                      "batch_size": 50})
    config.eval_reference_stats = config_dict.placeholder(str)  # the data's statistics in the eval_features space
    config.eval_seed = 0  # the held-out noise bank
    config.ceiling_cache = "~/.cache/ddss/ceilings"  # the many-step ceiling, computed once per model and bank
    return config
