"""Reference statistics of the bundled digits, in the digits classifier's space.

  ddss --config=ref_stats_digits --workdir=/tmp/ref_digits
  ddss --config=ref_stats_digits --workdir=/tmp/ref_digits_train --config.split=train

The shipped files ddss/models/assets/digits_stats_{all,train}.npz are these outputs (a test checks
that they still match the shipped classifier).
"""
import ml_collections
from ml_collections import config_dict


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "ref_stats"
    config.source = "digits"
    config.split = "all"  # all (1797), train (1437) or test (360)
    config.features = ml_collections.ConfigDict({"name": "digits", "weights": "", "batch_size": 1000})
    config.batch_size = 1000
    config.save_features = False
    config.max_samples = config_dict.placeholder(int)  # None: every image
    config.checkpoint_every = 20
    return config
