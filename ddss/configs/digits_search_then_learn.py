"""Evolution, then gradient, on the digits model at K = 4: the searched DDIM timesteps become the
starting point of a learned GGDM+PRED+TIME sampler, reported beside both parents (the searched
sampler itself, and the same DDSS run started from its usual solver) and the baselines.

  ddss --config=digits_search_then_learn --workdir=/tmp/digits_search_then_learn

The search is ddss/configs/digits_evolution_ddim.py's timestep search (DDIM, the paper's); DDSS is
ddss/configs/digits_ddss.py's learning. See ddss/experiments/search_then_learn.py.
"""
from ddss.configs import digits_ddss, digits_evolution_ddim
from ddss.experiments import search_then_learn


def get_config():
    config = search_then_learn.compose(digits_ddss.get_config(), digits_evolution_ddim.get_config())
    config.num_steps = (4,)
    return config
