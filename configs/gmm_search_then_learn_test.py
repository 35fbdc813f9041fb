"""Tiny evolution-then-gradient run on the analytic Gaussian mixture, for tests (seconds on a CPU)."""
import ml_collections

from configs import gmm_ddss_test, gmm_evolution_test

_EVOLUTION = ("sampler", "ggdm_sampler", "fitness_samples", "chunk_size", "chunk_images", "seed_stride", "search",
              "joint")
_DDSS = ("learn", "init", "train", "loss", "reference_features")


def get_config():
    learn, search = gmm_ddss_test.get_config(), gmm_evolution_test.get_config()
    config = gmm_ddss_test.get_config()
    for key in _DDSS:
        del config[key]
    config.experiment = "search_then_learn"
    config.evolution = ml_collections.ConfigDict({key: search[key] for key in _EVOLUTION})
    config.ddss = ml_collections.ConfigDict({key: learn[key] for key in _DDSS})
    return config
