"""Tiny version of gmm_baselines.py for tests (seconds on a CPU)."""
from ml_collections import config_dict

from ddss.configs import gmm_baselines


def get_config():
    config = gmm_baselines.get_config()
    config.gmm.event_shape = (4, 4, 1)
    config.gmm.num_components = 3
    config.num_steps = (3, 6)
    config.methods = ("ddim-quadratic", "dpm-solver++(2m)-logsnr")
    config.reference_steps = 50
    config.num_samples = 96
    config.batch_size = 64
    config.ceiling_cache = config_dict.placeholder(str)  # None: tests compute it
    return config
