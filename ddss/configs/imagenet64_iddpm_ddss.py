"""DDSS on improved-DDPM's ImageNet 64×64 model (Nichol & Dhariwal 2021): the DDSS paper's second setting.

The model is openai's `imagenet64_uncond_100M_1500K.pt` (improved-diffusion: L_hybrid, learned
variance, cosine schedule, T = 4000, time input rescaled to 1000/T). GGDM+PRED+TIME samplers are
learned at K = 5, 10 and 25 with the KID loss, against the training-free baselines and the model's
own K-step ancestral sampler with its learned variance (`ddpm-linear`).

  # once: the checkpoint (from improved-diffusion's README) and the reference statistics
  wget https://openaipublic.blob.core.windows.net/diffusion/march-2021/imagenet64_uncond_100M_1500K.pt
  ddss --config=ref_stats_imagenet64 --workdir=~/stats/imagenet64_pool
  ddss --config=ref_stats_imagenet64 --workdir=~/stats/imagenet64_768 \
      --config.features.output=pool_768 --config.save_features=True --config.max_samples=50000
  # without torch on the sampling machine, convert once where torch is installed (flags as below):
  #   python -m ddss.models.adm imagenet64_uncond_100M_1500K.pt imagenet64_uncond.safetensors --image_size=64 ...
  ddss --config=imagenet64_iddpm_ddss --workdir=~/ddss/imagenet64_iddpm \
      --config.checkpoint=imagenet64_uncond_100M_1500K.pt \
      --config.reference_stats=~/stats/imagenet64_768/stats.npz \
      --config.reference_features=~/stats/imagenet64_768/features.npy \
      --config.eval_reference_stats=~/stats/imagenet64_pool/stats.npz

Spaces: the loss, validation and best-step choice see Inception's 768-d block-2 layer; the headline
FID is Inception's 2048-d pool layer, which no objective touches (the same network, a different
layer: the closest independent space ImageNet users have weights for). Each K trains 5000 steps of
batch 64 through the whole K-step chain and the Inception network at 299×299: an accelerator job.
"""
import ml_collections
from ml_collections import config_dict

# improved-diffusion's ImageNet-64 flags (its README's MODEL_FLAGS and DIFFUSION_FLAGS, with the
# defaults of its script_util spelled out: create_model's own defaults differ).
IDDPM_FLAGS = dict(image_size=64, num_channels=128, num_res_blocks=3, learn_sigma=True, class_cond=False,
                   attention_resolutions="16,8", num_heads=4, num_heads_upsample=-1, use_scale_shift_norm=True,
                   dropout=0.0, diffusion_steps=4000, noise_schedule="cosine", rescale_timesteps=True)

INCEPTION = {"name": "inception", "weights": "", "output": "pool", "check_hash": True, "batch_size": 50}


def get_config():
    config = ml_collections.ConfigDict()
    config.experiment = "ddss"
    config.model = "adm"
    config.checkpoint = config_dict.placeholder(str)  # required: imagenet64_uncond_100M_1500K.pt
    config.adm = ml_collections.ConfigDict(dict(flags=dict(IDDPM_FLAGS), classifier=config_dict.placeholder(str),
                                                classifier_flags={}, classifier_scale=0.0))
    config.class_labels = "uniform"  # unused: the model is unconditional
    config.seed = 0
    config.num_steps = (5, 10, 25)
    config.methods = ("ddpm-linear", "ddim-linear", "ddim-quadratic", "dpm-solver++(2m)-logsnr",
                      "unipc(bh2,3)-logsnr")
    config.reference_steps = 1000  # the ceiling: the model's ancestral sampler at 1000 of its 4000 steps
    config.num_samples = 10000
    config.batch_size = 250
    config.clip_denoised = True
    config.features = ml_collections.ConfigDict({**INCEPTION, "output": "pool_768"})  # the train space
    config.reference_stats = config_dict.placeholder(str)
    config.eval_features = ml_collections.ConfigDict(INCEPTION)  # the headline FID's space
    config.eval_reference_stats = config_dict.placeholder(str)
    config.eval_seed = 0
    config.ceiling_cache = "~/.cache/ddss/ceilings"
    config.learn = (("ggdm+pred+time", "kid"),)
    config.init = ml_collections.ConfigDict(dict(base="dpm_solver++", stride="logsnr", eta=0.0))
    config.loss = ml_collections.ConfigDict(dict(kind="kid", teacher_weight=1.0, teacher_space="features",
                                                 teacher_steps=50))
    config.train = ml_collections.ConfigDict(dict(
        steps=5000, batch_size=64, learning_rate=3e-3, warmup_steps=100, grad_clip=1.0,
        log_every=50, eval_every=500, val_samples=2000, checkpoint_every=100, remat=True))
    config.reference_features = config_dict.placeholder(str)  # features.npy in the train space (pool_768)
    return config
