"""DDSS on the analytic Gaussian mixture (exact ε): the same learning as configs/digits_ddss.py on a
model whose ground truth is known. "fid" is the Fréchet distance to the mixture's exact moments.

  python -m ddss.main --config=configs/gmm_ddss.py --workdir=/tmp/gmm_ddss
"""
import ml_collections

from configs import gmm_baselines


def get_config():
    config = gmm_baselines.get_config()
    config.experiment = "ddss"
    config.num_steps = (4, 5, 10)
    config.methods = ("ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-logsnr")
    config.learn = (("ggdm+pred+time", "kid"),)
    config.init = ml_collections.ConfigDict(dict(base="dpm_solver++", stride="logsnr", eta=0.0))
    config.loss = ml_collections.ConfigDict(dict(kind="kid", teacher_weight=1.0, teacher_space="pixels",
                                                 teacher_steps=50, teacher_pairs=0))
    config.train = ml_collections.ConfigDict(dict(
        steps=300, batch_size=256, learning_rate=1e-2, warmup_steps=0, grad_clip=1.0,
        log_every=20, eval_every=100, val_samples=1000, checkpoint_every=50, remat=True))
    config.reference_features = ""
    return config
