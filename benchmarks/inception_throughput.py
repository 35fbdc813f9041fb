"""Feature-extraction throughput: our Flax FID Inception (jitted) against pytorch-fid's InceptionV3.

  python benchmarks/inception_throughput.py                  # batch 50, 32×32 inputs (CIFAR-sized)
  python benchmarks/inception_throughput.py --batch 50 --size 64 --repeats 5

Both networks hold the same random weights in pytorch-fid's .pth layout (ours converted from them),
see the same images, and resize them to 299×299 themselves. Prints images/s of each, the ratio
ours/torch (goal ≥ 1), the largest relative difference of their pool features on the timed batch,
and peak memory (XLA's compiled temporaries for ours; the process's peak RSS for both). Needs torch,
pytorch-fid and torchvision's model code (the test extra; see tests/torch_reference.py).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from ddss.diagnostics import median_time  # noqa: E402
from ddss.metrics import inception  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()

    os.environ.setdefault("DDSS_REQUIRE_REFERENCES", "1")
    import torch
    from torch_reference import random_fid_inception

    if args.threads:
        torch.set_num_threads(args.threads)
    model, state, _ = random_fid_inception(seed=0, output_blocks=(3,))
    params = inception.params_from_torch(state)
    images01 = np.random.default_rng(0).uniform(0, 1, (args.batch, 3, args.size, args.size)).astype(np.float32)
    x_torch = torch.from_numpy(images01)
    x_jax = jnp.asarray(images01.transpose(0, 2, 3, 1) * 2 - 1)

    def torch_pool():
        with torch.no_grad():
            return model(x_torch)[0].flatten(1)

    ours = jax.jit(lambda p, x: inception.apply(p, x)["pool"])
    start = time.perf_counter()
    compiled = ours.lower(params, x_jax).compile()
    compile_s = time.perf_counter() - start
    temp_bytes = compiled.memory_analysis().temp_size_in_bytes

    def jax_pool():
        return ours(params, x_jax).block_until_ready()

    diff = float(np.abs(np.asarray(jax_pool()) - torch_pool().numpy()).max() / np.abs(torch_pool().numpy()).max())
    t_torch = median_time(torch_pool, repeats=args.repeats)
    t_jax = median_time(jax_pool, repeats=args.repeats)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"FID Inception, batch {args.batch} of {args.size}x{args.size} -> 299x299, {os.cpu_count()} CPUs, "
          f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"  pytorch-fid (torch, eager)   {args.batch / t_torch:8.1f} images/s   ({t_torch * 1e3:.0f} ms/batch)")
    print(f"  ddss (jax.jit)               {args.batch / t_jax:8.1f} images/s   ({t_jax * 1e3:.0f} ms/batch, "
          f"compile {compile_s:.1f} s)")
    print(f"  ratio ours/torch             {t_torch / t_jax:8.2f}x")
    print(f"  max |pool difference| / max |pool|: {diff:.1e}")
    print(f"  XLA temporaries {temp_bytes / 2**20:.0f} MiB; process peak RSS {rss_mb:.0f} MiB (both libraries)")


if __name__ == "__main__":
    main()
