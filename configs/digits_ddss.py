"""DDSS on the embedded digits model: learned GGDM+PRED+TIME samplers at K = 4, 5, 10 against every
training-free baseline, scored in the digits classifier's feature space on held-out noise.

  python -m ddss.main --config=configs/digits_ddss.py --workdir=/tmp/digits_ddss

Trains with the paper's KID loss (batch 128 against all 1797 digits' features; fresh noise every
step; 100 Adam steps, 50 at K = 10, where the initial solver is already close to the ceiling),
initialised at DPM-Solver++(2M) on the λ-uniform grid, keeping the parameters with the best FID on a
1000-sample validation bank (the initial sampler included); exports each sampler for
`ddss.load_sampler`; scores every row on 2000 held-out samples against all digits. The 1000-step
ceiling is read from the copy that ships with the package (it is recomputed, 20+ minutes, for other
seeds or sample counts). See ddss/experiments/ddss.py for the files it writes.
"""
import ml_collections

from configs import digits_baselines


def get_config():
    config = digits_baselines.get_config()
    config.experiment = "ddss"
    config.num_steps = (4, 5, 10)
    config.methods = ("ddpm-linear", "ddpm-quadratic", "ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-logsnr")
    config.learn = (("ggdm+pred+time", "kid"),)
    config.init = ml_collections.ConfigDict(dict(base="dpm_solver++", stride="logsnr", eta=0.0, timesteps_from=()))
    config.loss = ml_collections.ConfigDict(dict(kind="kid", teacher_weight=1.0, teacher_space="features",
                                                 teacher_steps=20, teacher_pairs=2048))
    config.train = ml_collections.ConfigDict(dict(
        steps=100, steps_by_k=((10, 50),), batch_size=128, learning_rate=1e-2, warmup_steps=0, grad_clip=1.0,
        log_every=10, eval_every=25, val_samples=1000, checkpoint_every=25, remat=True))
    config.reference_features = ""  # the digits model brings its own (all 1797 digits)
    return config
