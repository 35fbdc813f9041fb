"""Tiny timestep search on the analytic Gaussian mixture, for tests (seconds on a CPU)."""
import ml_collections
from ml_collections import config_dict

from ddss.configs import gmm_baselines


def get_config():
    config = gmm_baselines.get_config()
    config.experiment = "evolution"
    config.gmm.event_shape = (4, 4, 1)
    config.gmm.num_components = 3
    config.num_steps = (3,)
    config.methods = ("ddim-linear",)
    config.reference_steps = 10
    config.num_samples = 64
    config.batch_size = 64
    config.ceiling_cache = config_dict.placeholder(str)
    config.sampler = "ddim"
    config.ggdm_sampler = config_dict.placeholder(str)
    config.fitness_samples = 64
    config.chunk_size = 4
    config.chunk_images = 4096
    config.seed_stride = "linear"
    config.searches = (("timesteps", 3),)
    config.search = ml_collections.ConfigDict(dict(
        population=8, parents=3, mutants=3, crossovers=2, generations=4, mutation_prob=0.25, skip_prob=0.05,
        length_prob=0.2, seed_mutants=2, stage1_generations=2, stall_generations=2, ramp_generations=2))
    config.joint = ml_collections.ConfigDict(dict(max_skip_fraction=0.5, free_steps=True, extra_steps=2))
    return config
