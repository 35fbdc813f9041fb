"""Deployed pruning is real: wall time of the UNet with a static skip list against the full network.

  python benchmarks/unet_pruning.py            # digits UNet (B=256) and DDPM CIFAR-10 UNet (B=8)
  python benchmarks/unet_pruning.py --quick    # fewer repeats
  python benchmarks/unet_pruning.py --adm      # ADM-G 64×64 and improved-DDPM 64×64 (B=8) instead
  python benchmarks/unet_pruning.py --adm=iddpm --quick   # one of them

For skip lists of 25% and 50% of the L blocks (three seeded random subsets each), prints
  predicted = MACs of the pruned network / MACs of the full one (`ddss.models.unet.network_macs`
              minus the skipped blocks' `Block.macs`)
  measured  = median wall time of the pruned jitted call / the full one, same batch, same inputs
and, for contrast, the same skip set given as a traced mask (every block still computed: ≈ 1).
Weights are random (timing does not depend on them); the architectures are the shipped digits
model's (read from its weight file) and google/ddpm-cifar10-32's; with --adm, openai's ADM-G
64×64 (`64x64_diffusion.pt`) and improved-DDPM ImageNet-64 (`imagenet64_uncond_100M_1500K.pt`) at
the flags of ddss/configs/imagenet64_*.py.
"""
from __future__ import annotations

import argparse
import jax
import jax.numpy as jnp
import numpy as np

from ddss.diagnostics import median_time
from ddss.configs import imagenet64_adm_evolution, imagenet64_iddpm_ddss
from ddss.models import adm, convert, digits, unet

CIFAR10 = convert.config_from_diffusers({
    "block_out_channels": [128, 256, 256, 256], "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D",
    "DownBlock2D"], "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "downsample_padding": 0, "flip_sin_to_cos": False, "freq_shift": 1, "attention_head_dim": None,
    "norm_eps": 1e-6, "sample_size": 32})


def bench(name: str, config, batch: int, repeats: int) -> None:
    if isinstance(config, adm.ADMConfig):
        params, s, model = adm.init_params(config, jax.random.key(0)), config.image_size, adm.ADMNet(config)
        blocks, total = adm.blocks(config), adm.network_macs(config)
        y = jnp.arange(batch) if config.class_cond else None
    else:
        params, s, model = unet.init_params(config, jax.random.key(0)), config.sample_size, unet.UNet(config)
        blocks, total = unet.blocks(config), unet.network_macs(config)
        y = None
    x = jax.random.normal(jax.random.key(1), (batch, s, s, config.in_channels))
    t = jnp.linspace(0, 999, batch)
    adm_net = isinstance(config, adm.ADMConfig)  # ADMNet takes labels (or None) before the mask
    call = (lambda p, m=None, skip=(): model.apply({"params": p}, x, t, y, m, skip)) if adm_net else (
        lambda p, m=None, skip=(): model.apply({"params": p}, x, t, m, skip))
    full = jax.jit(lambda p: call(p))
    masked = jax.jit(lambda p, m: call(p, m))
    t_full = median_time(full, params, repeats=repeats)
    print(f"\n{name}: L={len(blocks)} blocks, {total / 1e6:.1f} MMAC/image, batch {batch}, "
          f"full network {t_full * 1e3:.1f} ms")
    print("| skipped | subset | skipped MACs | predicted | measured (static) | traced mask |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for fraction in (0.25, 0.5):
        n = round(fraction * len(blocks))
        for subset in range(3):
            skip = tuple(sorted(int(i) for i in rng.choice(len(blocks), n, replace=False)))
            saved = sum(blocks[i].macs for i in skip)
            predicted = (total - saved) / total
            pruned = jax.jit(lambda p, skip=skip: call(p, None, skip))
            measured = median_time(pruned, params, repeats=repeats) / t_full
            mask = jnp.zeros(len(blocks), bool).at[jnp.asarray(skip)].set(True)
            traced = median_time(masked, params, mask, repeats=repeats) / t_full
            print(f"| {n}/{len(blocks)} | {skip} | {saved / total:.1%} | {predicted:.3f} | {measured:.3f} | {traced:.3f} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--adm", nargs="?", const="all", choices=("all", "adm-g", "iddpm"),
                        help="openai's ImageNet-64 networks instead (both, or one)")
    args = parser.parse_args()
    repeats = 5 if args.quick else 20
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    if args.adm:
        for key, name, flags in (
                ("adm-g", "ADM-G 64×64 (64x64_diffusion.pt)", imagenet64_adm_evolution.ADM_G_FLAGS),
                ("iddpm", "improved-DDPM ImageNet-64 (imagenet64_uncond_100M_1500K.pt)",
                 imagenet64_iddpm_ddss.IDDPM_FLAGS)):
            if args.adm not in ("all", key):
                continue
            config = adm.ADMConfig.from_flags(**{k: v for k, v in flags.items() if k not in adm.DIFFUSION_FLAGS})
            bench(name, config, 8, 3 if args.quick else 5)
        return
    bench("digits UNet (the shipped model's architecture)", digits.load().config, 256, repeats)
    bench("DDPM CIFAR-10 UNet (google/ddpm-cifar10-32 architecture)", CIFAR10, 8, max(3, repeats // 4))


if __name__ == "__main__":
    main()
