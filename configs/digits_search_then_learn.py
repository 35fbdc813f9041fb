"""Evolution, then gradient, on the digits model at K = 4: the searched DDIM timesteps become the
starting point of a learned GGDM+PRED+TIME sampler, reported beside both parents (the searched
sampler itself, and the same DDSS run started from its usual solver) and the baselines.

  python -m ddss.main --config=configs/digits_search_then_learn.py --workdir=/tmp/digits_search_then_learn

The search is configs/digits_evolution.py's timestep search; DDSS is configs/digits_ddss.py's
learning. See ddss/experiments/search_then_learn.py.
"""
import ml_collections

from configs import digits_ddss, digits_evolution

_EVOLUTION = ("sampler", "ggdm_sampler", "fitness_samples", "chunk_size", "chunk_images", "seed_stride", "search",
              "joint")
_DDSS = ("learn", "init", "train", "loss", "reference_features")


def get_config():
    learn, search = digits_ddss.get_config(), digits_evolution.get_config()
    config = digits_ddss.get_config()
    for key in _DDSS:
        del config[key]
    config.experiment = "search_then_learn"
    config.num_steps = (4,)
    config.evolution = ml_collections.ConfigDict({key: search[key] for key in _EVOLUTION})
    config.ddss = ml_collections.ConfigDict({key: learn[key] for key in _DDSS})
    return config
