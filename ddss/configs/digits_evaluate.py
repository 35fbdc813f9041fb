"""Score exported digits samplers beside the training-free baselines at their K.

  ddss --config=digits_evaluate --workdir=DIR            (the learned K = 5 sampler that ships with ddss)
  ddss --config=digits_evaluate --workdir=DIR \
      --config.samplers='("RUN/runs/ggdm+pred+time-teacher_K5/sampler.safetensors",)'
  ddss --config=digits_evaluate --workdir=DIR --config.samplers='("DDSS_RUN","EVOLUTION_RUN")'  (every export)

Held-out noise (2000 samples), uint8-quantised samples, FID / precision / recall in the digits
evaluation network's space, the digits classifier's FID beside it. See ddss/experiments/evaluate.py.
"""
from ddss.configs import digits_baselines
from ddss.models import digits


def get_config():
    config = digits_baselines.get_config()
    config.experiment = "evaluate"
    config.samplers = (digits.LEARNED_SAMPLER_FILE,)  # exported sampler files or finished run directories
    config.labels = ()  # optional row names, one per sampler
    config.num_steps = ()  # empty: the K of the samplers
    # The baselines beside them: DDIM-uniform (the search's seed), the λ-uniform DPM-Solver++ most users
    # pick, and the best training-free rows of digits_baselines at K = 4, 5 (UniPC-quadratic) and 10
    # (DPM-Solver++-quadratic). () scores the samplers on their own.
    config.methods = ("ddim-linear", "dpm-solver++(2m)-logsnr", "dpm-solver++(2m)-quadratic", "unipc(bh2,3)-quadratic")
    return config
