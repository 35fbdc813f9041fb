"""Reference statistics of an openai reference batch (.npz, uint8 images under arr_0), in Inception space.

  ddss --config=ref_stats_npz --workdir=~/stats/imagenet64 --config.npz=~/data/VIRTUAL_imagenet64_labeled.npz

The batches guided-diffusion's evaluator compares against (ImageNet 64×64, 128×128, 256×256, LSUN)
are read without pickle. Set `--config.image_size=N` to center-crop and resize to N×N.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "ref_stats"
    config.source = "npz"
    config.npz = config_dict.placeholder(str)  # required
    config.image_size = config_dict.placeholder(int)  # None: the batch's own size
    config.features = ml_collections.ConfigDict({"name": "inception", "weights": "", "output": "pool",
                                                 "check_hash": True, "batch_size": 50})
    config.batch_size = 50
    config.save_features = False
    config.max_samples = config_dict.placeholder(int)  # None: every image
    config.checkpoint_every = 20
    return config
