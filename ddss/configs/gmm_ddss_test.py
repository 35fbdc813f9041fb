"""Tiny version of gmm_ddss.py for tests (seconds on a CPU)."""
from ml_collections import config_dict

from ddss.configs import gmm_ddss


def get_config():
    config = gmm_ddss.get_config()
    config.gmm.event_shape = (4, 4, 1)
    config.gmm.num_components = 3
    config.num_steps = (3,)
    config.learn = (("ggdm+pred+time", "kid"),)
    config.loss.teacher_pairs = 0
    config.methods = ("ddim-quadratic",)
    config.reference_steps = 10
    config.num_samples = 64
    config.batch_size = 64
    config.ceiling_cache = config_dict.placeholder(str)
    # KID on 32-sample batches is noisy: a small learning rate, so the 12 steps improve on the start.
    config.train.update(steps=12, batch_size=32, learning_rate=1e-3, log_every=2, eval_every=6, val_samples=64,
                        checkpoint_every=3)
    return config
