"""Baseline samplers on the analytic Gaussian mixture (8×8×1 "images", exact ε).

  ddss --config=gmm_baselines --workdir=/tmp/gmm_baselines

Scores DDPM, DDIM and DPM-Solver++ at several K on held-out noise by the Fréchet distance between
the samples' moments and the mixture's exact moments (and KID against exact mixture samples), next
to the many-step ceiling (ddpm-1000) and the data-vs-data floor.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "baselines"
    config.model = "gmm"
    config.checkpoint = config_dict.placeholder(str)  # the mixture has no weights
    config.seed = 0  # training, validation and fitness streams
    config.eval_seed = 0  # the held-out noise bank, disjoint from every training stream
    config.schedule = "linear"  # linear-β DDPM schedule, T = 1000 ('cosine' also available)
    config.num_timesteps = 1000
    config.gmm = ml_collections.ConfigDict(dict(seed=0, event_shape=(8, 8, 1), num_components=10))
    config.num_steps = (4, 5, 10, 20, 50)
    config.methods = (
        "ddpm-linear",
        "ddpm-quadratic",
        "ddim-linear",
        "ddim-quadratic",
        "dpm-solver++(2m)-logsnr",
        "dpm-solver++(3m)-logsnr",
    )
    config.reference_steps = 1000  # the model's own sampler, ddpm on every step: the ceiling row (0: none)
    config.num_samples = 2000
    config.batch_size = 1000
    config.clip_denoised = False
    config.ceiling_cache = "~/.cache/ddss/ceilings"  # the many-step ceiling, computed once per model and bank
    return config
