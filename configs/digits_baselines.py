"""Training-free baselines on the embedded digits model, scored in the digits classifier's space.

  python -m ddss.main --config=configs/digits_baselines.py --workdir=/tmp/digits_baselines

FID/KID of 2000 held-out samples per row against all 1797 digits; `ddpm-1000` is the model's own
sampler (the ceiling) and `data` the test split against the train split (the floor).
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "baselines"
    config.model = "digits"
    config.checkpoint = ""  # empty: the shipped weights
    config.seed = 0  # training, validation and fitness streams (seeds [2**20, 2**21) internally)
    config.eval_seed = 0  # the held-out noise bank (seeds [0, 2**20)): disjoint from every training stream
    config.num_steps = (4, 5, 10, 20)
    config.methods = ("ddpm-quadratic", "ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-logsnr")
    config.reference_steps = 1000
    config.num_samples = 2000
    config.batch_size = 1000
    config.clip_denoised = False
    config.ceiling_cache = "~/.cache/ddss/ceilings"  # the many-step ceiling, computed once per model and bank
    return config
