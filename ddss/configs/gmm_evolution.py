"""AutoDiffusion on the analytic Gaussian mixture (exact ε, no feature network): UniPC-bh2 (order 2)
timesteps at K = 4 and 5, searched from the λ-uniform grid, against the best training-free rows.

  ddss --config=gmm_evolution --workdir=/tmp/gmm_evolution

The fitness is the Fréchet distance between the moments of 1024 samples from one fixed noise bank
and the mixture's exact moments; every row is then scored the same way on the 2000-sample held-out
bank, which the fitness never sees. The mixture's ε is cheap, so each search runs 30 generations
(the digits searches run 10). With no feature space to game, a searched row that beats the best
training-free row here has found better times, not a blind spot of a network. The mixture has no
network blocks, so only timestep searches apply.
"""
import ml_collections
from ml_collections import config_dict

from ddss.configs import gmm_baselines


def get_config():
    config = gmm_baselines.get_config()
    config.experiment = "evolution"
    config.num_steps = (4, 5)
    # The seed grid's row, the usual defaults and the best training-free rows at K = 4 and 5 (ddss/configs/gmm_ddss.py).
    config.methods = ("ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-logsnr", "unipc(bh2,2)-logsnr",
                      "unipc(bh2,3)-logsnr", "ipndm-logsnr", "ipndm-quadratic")
    config.sampler = "unipc"  # ddim | dpm_solver++ | unipc | unipc3 | ggdm
    config.ggdm_sampler = config_dict.placeholder(str)
    config.fitness_samples = 1024
    config.chunk_size = config_dict.placeholder(int)  # None: chunk_images // fitness_samples candidates per call
    config.chunk_images = 16384
    config.seed_stride = "logsnr"  # generation 0: UniPC on the λ-uniform grid
    config.searches = (("timesteps", 4), ("timesteps", 5))
    config.search = ml_collections.ConfigDict(dict(
        population=20, parents=6, mutants=8, crossovers=6, generations=30, mutation_prob=0.25, skip_prob=0.05,
        length_prob=0.2, seed_mutants=5, stage1_generations=4, stall_generations=2, ramp_generations=3))
    config.joint = ml_collections.ConfigDict(dict(max_skip_fraction=0.5, free_steps=True, extra_steps=2, branch=True))
    return config
