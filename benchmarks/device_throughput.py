"""Absolute throughput on the device JAX sees (a lent GPU or TPU), in one run of under 5 minutes.

  python benchmarks/device_throughput.py            # the sizes below
  python benchmarks/device_throughput.py --quick    # small sizes: checks the script end to end on a CPU

Random weights of the exact architectures (throughput does not depend on the values):

  1. DDIM sampler      the CIFAR-10 DDPM UNet (35.7M parameters, 32×32, diffusers' google/ddpm-cifar10-32
                       layout), K = 10 steps, batch 256: samples/s;
  2. Inception         pytorch-fid's InceptionV3 (2048-d pool features) from 32×32 images resized to
                       299×299, batch 500: images/s;
  3. DDSS step         GGDM+PRED+TIME at K = 5 on that UNet, KID in Inception's 768-d block-2 layer,
                       batch 64, each sampler step rematerialised: seconds per step;
  4. search evaluator  16 candidates of a K = 4 DDIM search with random timesteps and half the blocks
                       skipped, 64 fitness samples each, FID in the 768-d layer: candidates/s of one
                       vmapped call of the chunk against a Python loop of one jitted candidate (the
                       ratio is the figure; both compile once).

Every figure is the median of `--repeats` timed calls after a compiling one (`jax.block_until_ready`),
on every device of the mesh (`ddss.parallel`: the batch, or the candidates, split over them). Prints
the device, each figure and its compile time.
"""
from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from ddss import diagnostics, parallel, schedules
from ddss.metrics import fid, inception
from ddss.models import unet
from ddss.samplers import ddim, ggdm
from ddss.search import differentiable, evolution


def timed(fn, *args, repeats: int) -> tuple[float, float]:
    """(median seconds per call, seconds of the first, compiling call)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    return diagnostics.median_time(fn, *args, repeats=repeats), first


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a CPU check of the script)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    q = args.quick
    sizes = dict(sample_batch=16 if q else 256, inception_batch=8 if q else 500, ddss_batch=8 if q else 64,
                 candidates=4 if q else 16, fitness_samples=8 if q else 64)
    config = unet.UNetConfig(block_out_channels=(32, 64, 64, 64)) if q else unet.UNetConfig()
    mesh = parallel.make_mesh()
    n_dev = mesh.size
    print(f"device: {jax.devices()[0].device_kind} × {n_dev} ({jax.default_backend()}), jax {jax.__version__}"
          f"{', quick sizes' if q else ''}")
    schedule = schedules.linear_beta(1000)
    params = unet.init_params(config, jax.random.key(0))
    incep = inception.init_params(jax.random.key(1))
    shape = (config.sample_size, config.sample_size, config.in_channels)
    print(f"UNet: {unet.count_params(params) / 1e6:.1f}M parameters, {unet.num_blocks(config)} blocks, "
          f"{unet.network_macs(config) / 1e9:.2f} GMAC per image")
    rows = []
    with jax.set_mesh(mesh):
        # 1. DDIM sampling.
        b = sizes["sample_batch"]
        sampler = ddim.init(schedule, schedules.timesteps(schedule, "quadratic", 10))
        sample = jax.jit(lambda p, x, key: ddim.sample(sampler, unet.eps_fn(config, p), x, key))
        x, _ = parallel.put_batch(np.asarray(jax.random.normal(jax.random.key(2), (b,) + shape)))
        t, c = timed(sample, params, x, jax.random.key(3), repeats=args.repeats)
        rows.append(("DDIM sampler, K = 10", f"{b / t:.1f} samples/s", f"batch {b}", c))

        # 2. Inception features.
        b = sizes["inception_batch"]
        feats = jax.jit(lambda p, x: inception.apply(p, x)["pool"])
        x, _ = parallel.put_batch(np.asarray(jax.random.uniform(jax.random.key(4), (b, 32, 32, 3), minval=-1, maxval=1)))
        t, c = timed(feats, incep, x, repeats=args.repeats)
        rows.append(("Inception pool features", f"{b / t:.1f} images/s", f"batch {b}", c))

        # 3. One DDSS step.
        b = sizes["ddss_batch"]
        init = ggdm.init(schedule, schedules.timesteps(schedule, "quadratic", 5), family="ggdm+pred+time")
        sample_fn = lambda learned, mp, x_, key: ggdm.sample(init.replace(learned=learned), unet.eps_fn(config, mp),
                                                             x_, key)
        features_768 = lambda images: inception.apply(incep, images, outputs=("pool_768",))["pool_768"]
        loss = differentiable.make_loss(sample_fn, features_768, differentiable.LossConfig(kind="kid"))
        optimizer = differentiable.make_optimizer(1e-3, 1.0, 100)
        reals = jax.random.normal(jax.random.key(5), (4 * b, 768))
        step = jax.jit(differentiable.make_step(loss, optimizer, (b,) + shape, len(reals), b))
        state = differentiable.init_state(init.learned, optimizer, jax.random.key(6))
        t, c = timed(lambda s: step(s, params, reals)[1]["loss"], state, repeats=args.repeats)
        rows.append(("DDSS step, K = 5, KID", f"{t:.3f} s/step", f"batch {b}", c))

        # 4. The search's evaluator: vmapped chunk against a loop of one jitted candidate.
        m, n = sizes["candidates"], sizes["fitness_samples"]
        L = unet.num_blocks(config)
        ref_feats = np.asarray(jax.random.normal(jax.random.key(7), (256, 768)), np.float64)
        reference = fid.Reference.from_stats(ref_feats.mean(0), np.cov(ref_feats, rowvar=False))
        apply_skip = lambda p, x_, t_, mask, skip: unet.eps_fn(config, p, skip_mask=mask, skip=skip)(x_, t_)
        fn = evolution.fitness_fn("ddim", schedule, apply_skip, lambda p, im: inception.apply(p, im, outputs=(
            "pool_768",))["pool_768"], reference, clip_denoised=True)
        space = evolution.Space.fixed(1000, L, 4)
        genomes = [evolution.random_genome(jax.random.key(10 + i), space, 0.5) for i in range(m)]
        (ts, masks), _ = parallel.put_batch(evolution.stack(genomes), axis=(parallel.POPULATION, parallel.DATA))
        noise = jax.device_put(jax.random.normal(jax.random.key(8), (n,) + shape), parallel.replicated())
        rest = (noise, jax.random.key(9), params, incep)
        vmapped = jax.jit(fn)
        single = jax.jit(lambda t_, mk, *r: jax.tree.map(lambda a: a[0], fn(t_[None], mk[None], *r)))
        t_host, m_host = evolution.stack(genomes)
        t_v, c_v = timed(vmapped, ts, masks, *rest, repeats=args.repeats)
        t_l, c_l = timed(lambda: [single(t_host[i], m_host[i], *rest) for i in range(m)], repeats=args.repeats)
        rows.append(("search evaluator, vmapped", f"{m / t_v:.2f} candidates/s", f"{m} × {n} samples", c_v))
        rows.append(("search evaluator, loop", f"{m / t_l:.2f} candidates/s", f"vmapped / loop = {t_l / t_v:.2f}×",
                     c_l))

    print("\n| work | throughput | size | compile + first call (s) |\n|---|---|---|---|")
    for name, value, size, compile_s in rows:
        print(f"| {name} | {value} | {size} | {compile_s:.1f} |")


if __name__ == "__main__":
    main()
