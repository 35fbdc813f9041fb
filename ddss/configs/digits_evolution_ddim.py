"""The AutoDiffusion paper's search on the digits model: DDIM (η = 0) timesteps and skipped blocks at
K = 3 and 4, seeded with DDIM-uniform.

  ddss --config=digits_evolution_ddim --workdir=/tmp/digits_evolution_ddim

Everything else (searches, budgets, generations, fitness, scoring on 2000 held-out samples in the
digits evaluation network's space) is ddss/configs/digits_evolution.py's, which searches UniPC-bh2's
times from the time-quadratic grid instead. DDIM's searched times are what
ddss/configs/digits_search_then_learn.py hands to DDSS (a GGDM starts exactly at a DDIM sampler).
About 8 minutes on 2 CPU cores.
"""
from ddss.configs import digits_evolution


def get_config():
    config = digits_evolution.get_config()
    config.sampler = "ddim"
    config.seed_stride = "linear"
    return config
