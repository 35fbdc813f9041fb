"""Train the embedded default model, a DDPM UNet on the 8×8 digits (about 45 min on 2 CPU cores).

  ddss --config=digits_train --workdir=/tmp/digits_train

DDPM L_simple, linear β (1e-4 .. 0.02), T = 1000, Adam with warm-up and cosine decay, EMA of the
weights. Native 8×8×1 images in [-1, 1]: no resizing, so samplers work on the real data and one
network call costs about 23 MMAC. Its `unet_ema.safetensors` is the shipped
`ddss/models/assets/digits_unet.safetensors`. A short run: `--config.steps=20 --config.eval_samples=0`.
"""
import ml_collections


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "train"
    config.seed = 0
    config.dataset = "digits:all"
    config.model = ml_collections.ConfigDict(dict(
        sample_size=8, in_channels=1, out_channels=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        layers_per_block=2, norm_num_groups=8, norm_eps=1e-6,
        flip_sin_to_cos=False, freq_shift=1.0, downsample_padding=0,
        attention_head_dim=None, dropout=0.1,
    ))
    config.schedule = ml_collections.ConfigDict(dict(kind="linear_beta", num_timesteps=1000, beta_start=1e-4, beta_end=0.02))
    config.steps = 12000
    config.batch_size = 128
    config.learning_rate = 1e-3
    config.warmup_steps = 200
    config.grad_clip = 1.0
    config.ema_decay = 0.999
    config.log_every = 100
    config.checkpoint_every = 1000
    config.eval_samples = 1000
    config.eval_batch_size = 500
    return config
