"""DDSS on DDPM CIFAR-10, from your diffusers checkpoint directory.

`google/ddpm-cifar10-32` through the diffusers converter: learned GGDM+PRED+TIME samplers at K = 5, 10, 20 with KID in pytorch-fid's Inception space, against the
training-free baselines, scored by FID against the CIFAR-10 training set's statistics.

  huggingface-cli download google/ddpm-cifar10-32 --local-dir ~/ckpt/ddpm-cifar10-32
  ddss --config=ref_stats_cifar10 --workdir=~/stats/cifar10_train \
      --config.save_features=True
  ddss --config=cifar10_ddss --workdir=/tmp/cifar10_ddss \
      --config.checkpoint=~/ckpt/ddpm-cifar10-32 --config.reference_stats=~/stats/cifar10_train/stats.npz \
      --config.reference_features=~/stats/cifar10_train/features.npy

The KID loss needs the real images' Inception features (`features.npy`, 400 MB for 50k images);
the FID columns need only `stats.npz`. Gradients pass through the Inception network at 299×299,
so this is an accelerator job: on a CPU one step takes minutes.
"""
import ml_collections
from ml_collections import config_dict

from ddss.configs import cifar10_ddpm


def get_config():
    config = cifar10_ddpm.get_config()
    config.experiment = "ddss"
    config.num_steps = (5, 10, 20)
    config.methods = ("ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-logsnr")
    config.learn = (("ggdm+pred+time", "kid"),)
    config.init = ml_collections.ConfigDict(dict(base="dpm_solver++", stride="logsnr", eta=0.0))
    config.loss = ml_collections.ConfigDict(dict(kind="kid", teacher_weight=1.0, teacher_space="features",
                                                 teacher_steps=50))
    config.train = ml_collections.ConfigDict(dict(
        steps=5000, batch_size=128, learning_rate=3e-3, warmup_steps=100, grad_clip=1.0,
        log_every=50, eval_every=500, val_samples=2000, checkpoint_every=100, remat=True))
    config.reference_features = config_dict.placeholder(str)  # required for the KID loss: features.npy from ref_stats --save_features
    return config
