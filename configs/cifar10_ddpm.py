"""DDPM CIFAR-10 (Ho et al., `google/ddpm-cifar10-32`) through the diffusers converter: the
training-free baselines at few steps, from the checkpoint directory you already have.

  huggingface-cli download google/ddpm-cifar10-32 --local-dir ~/ckpt/ddpm-cifar10-32
  python -m ddss.main --config=configs/cifar10_ddpm.py --workdir=/tmp/cifar10_ddpm \
      --config.checkpoint=~/ckpt/ddpm-cifar10-32

Writes samples, grids and results.json rows for every method and K. Rows carry fid = null until an
Inception feature extractor is configured for CIFAR-10 (the metrics module's job); the samples are
saved so they can be scored afterwards. Clipping of x̂_0 is on, as in the DDPM reference sampler.
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "baselines"
    config.model = "diffusers"
    config.checkpoint = ""  # required: the diffusers checkpoint directory
    config.seed = 0
    config.num_steps = (5, 10, 20)
    config.methods = ("ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-logsnr")
    config.reference_steps = 1000
    config.num_samples = 10000
    config.batch_size = 250
    config.clip_denoised = True
    return config
