"""Score exported digits samplers beside the training-free baselines at their K.

  ddss --config=digits_evaluate --workdir=DIR \
      --config.samplers='("RUN/runs/ggdm+pred+time-teacher_K5/sampler.safetensors",)'

Held-out noise (2000 samples), uint8-quantised samples, FID / precision / recall in the digits
evaluation network's space, the digits classifier's FID beside it. See ddss/experiments/evaluate.py.
"""
from ddss.configs import digits_baselines


def get_config():
    config = digits_baselines.get_config()
    config.experiment = "evaluate"
    config.samplers = ()  # exported sampler files
    config.labels = ()  # optional row names, one per sampler
    config.num_steps = ()  # empty: the K of the samplers
    return config
