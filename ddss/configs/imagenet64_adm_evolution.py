"""AutoDiffusion on ADM-G, ImageNet 64×64 (Dhariwal & Nichol 2021): the AutoDiffusion paper's headline setting.

The model is guided-diffusion's class-conditional `64x64_diffusion.pt` with its noisy classifier
`64x64_classifier.pt` at classifier scale 1.0. The search looks for DDIM timesteps at K = 4, and for
timesteps plus per-step skipped blocks under the budget of 4 full steps, with FID as fitness, against
DDIM, DPM-Solver++ and the model's own ancestral sampler (learned variance, classifier guidance on
its mean) at K = 4. Every sampler, the searched ones included, samples with the classifier-guided ε
(ε − s·√(1−ᾱ_t)·∇ₓ log p(y | x_t)); class labels are drawn uniformly over the 1000 classes
(`config.class_labels`), and results.json records the draw and the scale.

  # once: the checkpoints (guided-diffusion's README) and the reference statistics
  wget https://openaipublic.blob.core.windows.net/diffusion/jul-2021/64x64_diffusion.pt
  wget https://openaipublic.blob.core.windows.net/diffusion/jul-2021/64x64_classifier.pt
  ddss --config=ref_stats_imagenet64 --workdir=~/stats/imagenet64_pool
  ddss --config=ref_stats_imagenet64 --workdir=~/stats/imagenet64_768 --config.features.output=pool_768
  ddss --config=imagenet64_adm_evolution --workdir=~/ddss/imagenet64_adm \
      --config.checkpoint=64x64_diffusion.pt --config.adm.classifier=64x64_classifier.pt \
      --config.reference_stats=~/stats/imagenet64_768/stats.npz \
      --config.eval_reference_stats=~/stats/imagenet64_pool/stats.npz

Spaces: fitness is the FID in Inception's 768-d block-2 layer; the headline FID is its 2048-d pool
layer (the number the paper reports), which the search never sees. The paper's FID is against the
training set's statistics; openai's reference batch is another common choice
(ddss/configs/ref_stats_npz.py). An accelerator job: every candidate samples 1000 images through the
guided network (a classifier gradient per step) and Inception.
"""
import ml_collections
from ml_collections import config_dict

from ddss.configs import imagenet64_iddpm_ddss

# guided-diffusion's README flags for the 64×64 class-conditional model and its classifier.
ADM_G_FLAGS = dict(image_size=64, num_channels=192, num_res_blocks=3, channel_mult="", learn_sigma=True,
                   class_cond=True, attention_resolutions="32,16,8", num_heads=4, num_head_channels=64,
                   num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.1, resblock_updown=True,
                   use_new_attention_order=True, diffusion_steps=1000, noise_schedule="cosine")
CLASSIFIER_FLAGS = dict(image_size=64, classifier_width=128, classifier_depth=4,
                        classifier_attention_resolutions="32,16,8", classifier_use_scale_shift_norm=True,
                        classifier_resblock_updown=True, classifier_pool="attention")


def get_config():
    config = imagenet64_iddpm_ddss.get_config()  # the spaces, statistics and held-out protocol
    for name in ("learn", "init", "loss", "train", "reference_features"):
        del config[name]
    config.experiment = "evolution"
    config.checkpoint = config_dict.placeholder(str)  # required: 64x64_diffusion.pt
    config.adm = ml_collections.ConfigDict(dict(
        flags=dict(ADM_G_FLAGS), classifier=config_dict.placeholder(str),  # required: 64x64_classifier.pt
        classifier_flags=dict(CLASSIFIER_FLAGS), classifier_scale=1.0))
    config.class_labels = "uniform"
    config.num_steps = (4,)
    config.methods = ("ddpm-linear", "ddim-linear", "dpm-solver++(2m)-logsnr")
    config.reference_steps = 250  # ADM-G's own sampler at 250 respaced steps (its paper's setting)
    config.num_samples = 10000
    config.sampler = "ddim"
    config.ggdm_sampler = config_dict.placeholder(str)
    config.fitness_samples = 1000
    config.chunk_size = config_dict.placeholder(int)
    config.chunk_images = 4000
    config.seed_stride = "linear"
    config.searches = (("timesteps", 4), ("joint", 4))
    config.search = ml_collections.ConfigDict(dict(
        population=50, parents=10, mutants=25, crossovers=15, generations=10, mutation_prob=0.25, skip_prob=0.05,
        length_prob=0.2, seed_mutants=10, stage1_generations=5, stall_generations=2, ramp_generations=3))
    config.joint = ml_collections.ConfigDict(dict(max_skip_fraction=0.5, free_steps=True, extra_steps=2))
    return config
