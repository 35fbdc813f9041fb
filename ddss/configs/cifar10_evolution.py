"""AutoDiffusion on DDPM CIFAR-10, from your diffusers checkpoint directory.

`google/ddpm-cifar10-32` through the diffusers converter: DDIM timesteps at K = 4, and timesteps plus per-step block skipping under the budget of 4 full steps,
with FID in pytorch-fid's Inception space as fitness, against DDIM-uniform and DPM-Solver++ at K = 4.

  huggingface-cli download google/ddpm-cifar10-32 --local-dir ~/ckpt/ddpm-cifar10-32
  ddss --config=ref_stats_cifar10 --workdir=~/stats/cifar10_train
  ddss --config=cifar10_evolution --workdir=/tmp/cifar10_evolution \
      --config.checkpoint=~/ckpt/ddpm-cifar10-32 --config.reference_stats=~/stats/cifar10_train/stats.npz

AutoDiffusion's defaults: population 50, the best 10 ever as parents, 25 mutants, 15 crossovers, 10
generations; fitness from 1000 samples of one fixed noise bank (the paper used more; FID from 1000
samples is biased but ranks candidates on common noise well). Every row is scored on 10000 held-out
samples. An accelerator job: about 2.5M network evaluations at 32×32 plus the Inception features.
"""
import ml_collections
from ml_collections import config_dict

from ddss.configs import cifar10_ddpm


def get_config():
    config = cifar10_ddpm.get_config()
    config.experiment = "evolution"
    config.num_steps = (4,)
    config.methods = ("ddim-linear", "dpm-solver++(2m)-logsnr")
    config.sampler = "ddim"
    config.ggdm_sampler = config_dict.placeholder(str)
    config.fitness_samples = 1000
    config.chunk_size = config_dict.placeholder(int)  # None: chunk_images // fitness_samples candidates per call
    config.chunk_images = 8000
    config.seed_stride = "linear"
    config.searches = (("timesteps", 4), ("joint", 4))  # (kind, budget in full steps)
    config.search = ml_collections.ConfigDict(dict(
        population=50, parents=10, mutants=25, crossovers=15, generations=10, mutation_prob=0.25, skip_prob=0.05,
        length_prob=0.2, seed_mutants=10, stage1_generations=5, stall_generations=2, ramp_generations=3))
    config.joint = ml_collections.ConfigDict(dict(max_skip_fraction=0.5, free_steps=True, extra_steps=2))
    return config
