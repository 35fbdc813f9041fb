"""The shipped digits model: its training record and the FID of its own 1000-step DDPM sampler.

  python benchmarks/digits_model.py                 # 1000 samples (about 10 minutes on 2 CPU cores)
  python benchmarks/digits_model.py --samples 200   # quicker, noisier

Prints the training steps and final loss stored in the weight file, the FID and KID of
`--samples` 1000-step DDPM samples (fresh noise, seed `--seed`) against all 1797 digits in the
digits classifier's feature space, and the data-vs-data floor (test split against train split).
"""
from __future__ import annotations

import argparse
import time

import jax

from ddss.experiments import train
from ddss.metrics import features
from ddss.models import digits


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()
    model = digits.load()
    print(f"device: {jax.devices()[0].device_kind}, jax {jax.__version__}")
    print(f"training record in {digits.UNET_FILE}: {model.metadata.get('training')}")
    start = time.perf_counter()
    samples = train.sample_ddpm(model.config, model.params, model.schedule, args.samples, args.batch, args.seed)
    wall = time.perf_counter() - start
    row, floor = train.score_rows(samples, features.get("digits"), "ddpm-1000", 1000)
    print(f"ddpm-1000: FID {row['fid']:.3f}, KID {row['kid']:.4f} ± {row['kid_std']:.4f} "
          f"({args.samples} samples, {wall:.0f} s incl. compilation)")
    print(f"data (test split vs train split): FID {floor['fid']:.3f}, KID {floor['kid']:.4f}")


if __name__ == "__main__":
    main()
