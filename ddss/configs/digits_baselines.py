"""Training-free baselines on the embedded digits model: every solver on every time grid people use.

  ddss --config=digits_baselines --workdir=/tmp/digits_baselines

DDIM, DPM-Solver++ (2M, 3M), UniPC (bh2, orders 2 and 3) and iPNDM on the linear, time-quadratic,
λ-uniform and EDM (ρ = 7) grids, DDPM on the quadratic one, at K = 3, 4, 5, 10. Each row: 2000
held-out samples, quantised to uint8, scored in the digits evaluation network's space (FID,
precision, recall, KID, IS) against all 1797 digits, with the digits classifier's FID beside it;
`ddpm-1000` is the model's own sampler (the ceiling, shipped cached), `data` the test split against
the train split (the floor).
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "baselines"
    config.model = "digits"
    config.checkpoint = config_dict.placeholder(str)  # None: the shipped weights
    config.seed = 0  # training, validation and fitness streams (seeds [2**20, 2**21) internally)
    config.eval_seed = 0  # the held-out noise bank (seeds [0, 2**20)): disjoint from every training stream
    config.num_steps = (3, 4, 5, 10)
    config.methods = tuple(f"{family}-{grid}" for family in ("ddim", "dpm-solver++(2m)", "dpm-solver++(3m)",
                                                             "unipc(bh2,2)", "unipc(bh2,3)", "ipndm")
                           for grid in ("linear", "quadratic", "logsnr", "edm")) + ("ddpm-quadratic",)
    config.reference_steps = 1000  # the ceiling row: the model's own 1000-step DDPM (0: no ceiling row)
    config.num_samples = 2000
    config.batch_size = 1000
    config.clip_denoised = False
    config.ceiling_cache = "~/.cache/ddss/ceilings"  # the many-step ceiling, computed once per model and bank
    return config
