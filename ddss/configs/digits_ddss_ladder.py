"""The DDSS family ladder at K = 5 on the digits model: VARS, GGDM, GGDM+PRED, GGDM+TIME,
GGDM+PRED+TIME with the KID loss, and GGDM+PRED+TIME with the teacher loss (pixel distance to a
20-step DPM-Solver++(2M) solution from the same x_K) and with both. The objective ladder (losses,
starts, learning rate, steps) is benchmarks/ddss_ladder.py.

  ddss --config=digits_ddss_ladder --workdir=/tmp/digits_ddss_ladder

Every family starts from DDIM (η = 0) on the quadratic stride, so the ladder shows what each
ingredient adds to the same starting point (VARS can only start from DDIM). Each trains 100 steps at
learning rate 1e-2, a rate every family and loss tolerates (the main job's 3e-2 suits its teacher). Same scoring and files
as ddss/configs/digits_ddss.py; a few minutes per learned row on 2 CPU cores.
"""
from ddss.configs import digits_ddss


def get_config():
    config = digits_ddss.get_config()
    config.num_steps = (5,)
    config.methods = ("ddim-quadratic", "dpm-solver++(2m)-logsnr")
    config.learn = (("vars", "kid"), ("ggdm", "kid"), ("ggdm+pred", "kid"), ("ggdm+time", "kid"),
                    ("ggdm+pred+time", "kid"), ("ggdm+pred+time", "teacher"), ("ggdm+pred+time", "kid+teacher"))
    config.init.update(base="ddim", stride="quadratic", eta=0.0)
    # Validation by the train-space FID, the paper's: the KID families have no teacher to measure against.
    config.train.update(steps=100, learning_rate=1e-2, learning_rate_by_k=(), validation="fid")
    return config
