"""ImageNet 64×64 reference statistics in Inception space, from TFDS `imagenet_resized/64x64`.

The two ImageNet-64 experiments (imagenet64_iddpm_ddss.py, imagenet64_adm_evolution.py) score in two
layers of pytorch-fid's Inception: the headline FID in its 2048-d pool layer (the number papers
report) and their objectives (KID loss, fitness FID) in its 768-d block-2 layer. Write both, once:

  tfds build imagenet_resized/64x64 --manual_dir=...   # or: --config.data.download=True where online
  ddss --config=ref_stats_imagenet64 --workdir=~/stats/imagenet64_pool
  ddss --config=ref_stats_imagenet64 --workdir=~/stats/imagenet64_768 \
      --config.features.output=pool_768 --config.save_features=True

The first writes stats.npz (mu, sigma over the 1,281,167 training images, as ADM's and
improved-DDPM's FIDs are computed); the second also features.npy (768-d, 3.9 GB for the whole split;
`--config.max_samples=50000` keeps 50k, 150 MB, which is what the KID loss samples from). For
`downsampled_imagenet/64x64` (no labels) set `--config.data.name=downsampled_imagenet/64x64`. openai's
own reference batch (VIRTUAL_imagenet64_labeled.npz) is read by ddss/configs/ref_stats_npz.py.
Resumes after a kill from the last `checkpoint_every`.
"""
from ddss.configs import ref_stats_cifar10


def get_config():
    config = ref_stats_cifar10.get_config()  # the same features, batching and checkpointing
    config.data.name = "imagenet_resized/64x64"
    return config
