"""CIFAR-10 reference statistics in Inception pool space (FID's convention: the 50k training images).

  ddss --config=ref_stats_cifar10 --workdir=~/stats/cifar10_train

Needs the TFDS dataset prepared (`tfds build cifar10`, or `--config.download=True` where the
machine is online) and pytorch-fid's Inception weights (see `ddss.metrics.inception`). Writes
stats.npz (mu, sigma: the format pytorch-fid reads) for `ddss/configs/cifar10_ddpm.py
--config.reference_stats=.../stats.npz`. Resumes after a kill from the last `checkpoint_every`.
Other Inception weights of the same architecture: `--config.features.weights=PATH
--config.features.check_hash=False` (and the same two flags where the statistics are used).
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "ref_stats"
    config.source = "tfds"
    config.data = ml_collections.ConfigDict({"name": "cifar10", "split": "train", "image_size": None,
                                             "data_dir": None})
    config.features = ml_collections.ConfigDict({"name": "inception", "weights": "", "output": "pool",
                                                 "check_hash": True, "batch_size": 50})
    config.batch_size = 50
    config.save_features = False  # True also writes features.npy (50000 × 2048 float32, 400 MB) for KID
    config.max_samples = config_dict.placeholder(int)  # None: the whole split
    config.checkpoint_every = 20
    return config
