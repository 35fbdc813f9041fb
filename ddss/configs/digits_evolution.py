"""AutoDiffusion on the embedded digits model: UniPC-bh2 (order 2) timesteps and skipped blocks at
K = 3 and 4, searched from the best training-free row.

  ddss --config=digits_evolution --workdir=/tmp/digits_evolution

Three searches, against DDIM-uniform and the best training-free rows at K = 3 and 4:
  evolution-timesteps, budget 4 steps: the best 4 timesteps (full network);
  evolution-timesteps, budget 3 steps: the best 3 timesteps (full network), 3·L = 54 block executions;
  evolution-joint, budget 3 steps: timesteps and per-step skipped blocks within the same 54 block
      executions, where pruning may buy a fourth or fifth step.

The searched solver is UniPC-bh2, the best training-free solver on this model
(ddss/configs/digits_baselines.py), and generation 0 is seeded with its time-quadratic grid, the best
training-free row itself: the search only moves away from it where its fitness improves. The
AutoDiffusion paper's search (DDIM times from DDIM-uniform) is ddss/configs/digits_evolution_ddim.py;
on this model no set of DDIM times reaches UniPC on the quadratic grid at K = 4.

Fitness: FID in the digits classifier's space of 256 samples from one fixed noise bank, against all
1797 digits; 20 candidates per generation, 10 generations, parents = the best 6 ever evaluated. The
joint search shares its stage 1 (4 generations of timesteps with the full network) with the
timestep search of the same budget, then branches off it and allows up to half the blocks to be
skipped, ramped over 3 generations: both end with 10 generations, 200 candidates. Every row is
scored on 2000 held-out samples in the digits evaluation network's space, which the fitness never
sees (FID, precision, recall; the classifier's FID beside it). About 7 minutes on 2 idle CPU cores.
"""
import ml_collections
from ml_collections import config_dict

from ddss.configs import digits_baselines


def get_config():
    config = digits_baselines.get_config()
    config.experiment = "evolution"
    config.num_steps = (3, 4)  # the baselines' K
    # DDIM-uniform (the paper's seed) and the best training-free rows at K = 3, 4 of ddss/configs/digits_baselines.py.
    config.methods = ("ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-quadratic", "unipc(bh2,2)-quadratic",
                      "unipc(bh2,3)-quadratic")
    config.sampler = "unipc"  # ddim | dpm_solver++ | unipc | unipc3 | ggdm
    config.ggdm_sampler = config_dict.placeholder(str)  # sampler="ggdm": a DDSS export without +time (None: DPM-Solver++)
    config.fitness_samples = 256
    config.chunk_size = config_dict.placeholder(int)  # None: chunk_images // fitness_samples candidates per call
    config.chunk_images = 4096
    config.seed_stride = "quadratic"  # the grid generation 0 is seeded with
    config.searches = (("timesteps", 4), ("timesteps", 3), ("joint", 3))  # (kind, budget in full steps)
    config.search = ml_collections.ConfigDict(dict(
        population=20, parents=6, mutants=8, crossovers=6, generations=10, mutation_prob=0.25, skip_prob=0.05,
        length_prob=0.2, seed_mutants=5, stage1_generations=4, stall_generations=2, ramp_generations=3))
    config.joint = ml_collections.ConfigDict(dict(max_skip_fraction=0.5, free_steps=True, extra_steps=2, branch=True))
    return config
