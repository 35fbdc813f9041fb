"""Reference statistics of a folder of images, in Inception space.

pytorch-fid's directory mode, in our Inception port.

  ddss --config=ref_stats_folder --workdir=~/stats/mydata --config.folder=~/data/images

Reads every .png/.jpg/.jpeg/.bmp/.webp directly in the folder, sorted by name. Set
`--config.image_size=N` to center-crop and resize to N×N when sizes differ.
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "ref_stats"
    config.source = "folder"
    config.folder = config_dict.placeholder(str)  # required
    config.image_size = config_dict.placeholder(int)  # None: keep the native size (all images must share it)
    config.features = ml_collections.ConfigDict({"name": "inception", "weights": "", "output": "pool",
                                                 "check_hash": True, "batch_size": 50})
    config.batch_size = 50
    config.save_features = False
    config.max_samples = config_dict.placeholder(int)  # None: every image
    config.checkpoint_every = 20
    return config
