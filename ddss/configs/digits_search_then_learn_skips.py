"""Evolution, then gradient, with the searched skip sets carried into DDSS, on the digits model at K = 4.

  ddss --config=digits_search_then_learn_skips --workdir=/tmp/digits_search_then_learn_skips

The search is ddss/configs/digits_evolution_ddim.py's joint search at a fixed K = 4 (DDIM timesteps and
each step's skipped blocks, up to half of them; `joint.free_steps=False`, so pruning saves network
work instead of buying steps). DDSS then learns a GGDM+PRED sampler (no +time: each skip set belongs
to its step's searched integer time) from the searched sampler itself, keeping its skip sets: the
export skips the same blocks, statically. Beside it: the searched sampler, the same DDSS from
DPM-Solver++(2M) on the quadratic grid with the full network, and the training-free baselines. See
ddss/experiments/search_then_learn.py.

On the digits model the fixed-K search keeps every block (no skipped block lowers the fitness FID
at the same K), so the skip sets it carries are empty; the joint search with free steps
(ddss/configs/digits_evolution.py) prunes blocks to buy steps, and its export can be handed to DDSS
the same way (`--config.init.timesteps_from`, `--config.init.skips=True`; see the README).
"""
from ddss.configs import digits_search_then_learn


def get_config():
    config = digits_search_then_learn.get_config()
    config.ddss.learn = (("ggdm+pred", "teacher"),)
    config.ddss.init.skips = True
    config.evolution.joint.free_steps = False
    return config
