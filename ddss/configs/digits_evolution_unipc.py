"""AutoDiffusion over the best training-free solver on the digits model: UniPC-bh2 (order 2) timesteps
and skipped blocks, K = 3 and 4, searched from the time-quadratic grid.

  ddss --config=digits_evolution_unipc --workdir=/tmp/digits_evolution_unipc

ddss/configs/digits_evolution.py searches DDIM's times from DDIM-uniform, as the AutoDiffusion paper
does. On this model no set of DDIM times reaches UniPC on the quadratic grid at K = 4 (the best
training-free row), so this config searches UniPC's own times instead, starting from that best row:
the search can only move away from it where its fitness (FID of 256 fixed-noise samples in the
digits classifier's space) improves. Everything else (searches, budgets, generations, scoring on
2000 held-out samples in the digits evaluation network's space) is digits_evolution's.
"""
from ddss.configs import digits_evolution


def get_config():
    config = digits_evolution.get_config()
    config.sampler = "unipc"
    config.seed_stride = "quadratic"
    return config
