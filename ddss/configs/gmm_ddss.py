"""DDSS on the analytic Gaussian mixture (exact ε): the paper's KID loss and the pixel teacher (a
50-step DPM-Solver++ solution from the same noise, 4096 pairs computed once) on a model whose ground
truth is known. "fid" is the Fréchet distance to the mixture's exact moments: there is no feature
network, so nothing can be gamed, and the two objectives are compared on the truth.

  ddss --config=gmm_ddss --workdir=/tmp/gmm_ddss
"""
import ml_collections
from ml_collections import config_dict

from ddss.configs import gmm_baselines


def get_config():
    config = gmm_baselines.get_config()
    config.experiment = "ddss"
    config.num_steps = (4, 5, 10)
    config.methods = ("ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-logsnr", "dpm-solver++(3m)-logsnr",
                      "unipc(bh2,2)-logsnr", "unipc(bh2,3)-logsnr", "ipndm-logsnr", "ipndm-quadratic")
    config.learn = (("ggdm+pred+time", "kid"), ("ggdm+pred+time", "teacher"))
    config.init = ml_collections.ConfigDict(dict(base="dpm_solver++", stride="logsnr", eta=0.0))
    config.loss = ml_collections.ConfigDict(dict(kind="kid", teacher_weight=1.0, teacher_space="pixels",
                                                 teacher_steps=50, teacher_pairs=4096))
    config.train = ml_collections.ConfigDict(dict(
        steps=300, batch_size=256, learning_rate=1e-2, warmup_steps=0, grad_clip=1.0,
        log_every=20, eval_every=100, val_samples=1000, checkpoint_every=50, remat=True))
    config.reference_features = config_dict.placeholder(str)
    return config
