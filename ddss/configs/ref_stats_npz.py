"""Reference statistics of an openai reference batch (.npz, uint8 images under arr_0), in Inception space.

  ddss --config=ref_stats_npz --workdir=~/stats/imagenet64 --config.npz=~/data/VIRTUAL_imagenet64_labeled.npz

The batches guided-diffusion's evaluator compares against (ImageNet 64×64, 128×128, 256×256, LSUN)
are read without pickle. Set `--config.image_size=N` to center-crop and resize to N×N.
"""
from ml_collections import config_dict

from ddss.configs import ref_stats_folder


def get_config():
    config = ref_stats_folder.get_config()  # the same features, batching and checkpointing
    del config["folder"]
    config.source = "npz"
    config.npz = config_dict.placeholder(str)  # required
    return config
