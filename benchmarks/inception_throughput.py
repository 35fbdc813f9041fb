"""Feature-extraction throughput: our Flax FID Inception (jitted) against pytorch-fid's InceptionV3.

  python benchmarks/inception_throughput.py                  # batch 50, 32×32 inputs (CIFAR-sized)
  python benchmarks/inception_throughput.py --batch 50 --size 64 --repeats 5

Both networks hold the same random weights in pytorch-fid's .pth layout (ours converted from them),
see the same images, and resize them to 299×299 themselves. Ours runs in a fresh process per XLA
configuration (XLA flags are read once per process):

  default            XLA:CPU as installed
  ynn dots           XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=dot: XLA hands dots and
                     convolutions to YNNPACK (on CPU, the flag `python -m ddss.main` sets; GPU/TPU
                     ignore it)

Prints images/s of each, the ratio ours/torch (goal ≥ 1), the largest difference of the pool
features from torch's on the timed batch (relative to the largest feature), the compile time and
XLA's temporary memory. Needs torch, pytorch-fid and torchvision's model code (the test extra; see
tests/torch_reference.py).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = [("default", ""), ("ynn dots", "--xla_cpu_experimental_ynn_fusion_type=dot")]


def images01(batch: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (batch, 3, size, size)).astype(np.float32)


def jax_worker(args):
    """One XLA configuration: throughput of the jitted port, printed as JSON."""
    import time

    import jax
    import jax.numpy as jnp

    from ddss.diagnostics import median_time
    from ddss.metrics import inception

    params = inception.read_converted(os.path.join(args.workdir, "weights.safetensors"))
    x = jnp.asarray(images01(args.batch, args.size).transpose(0, 2, 3, 1) * 2 - 1)
    fn = jax.jit(lambda p, x: inception.apply(p, x)["pool"])
    start = time.perf_counter()
    compiled = fn.lower(params, x).compile()
    compile_s = time.perf_counter() - start
    pool = np.asarray(fn(params, x))
    want = np.load(os.path.join(args.workdir, "torch_pool.npy"))
    seconds = median_time(lambda: fn(params, x), repeats=args.repeats)
    print(json.dumps({"seconds": seconds, "compile_s": compile_s, "diff": float(np.abs(pool - want).max() / np.abs(want).max()),
                      "temp_mib": compiled.memory_analysis().temp_size_in_bytes / 2**20,
                      "jax": jax.__version__, "backend": jax.default_backend()}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return jax_worker(args)

    os.environ.setdefault("DDSS_REQUIRE_REFERENCES", "1")
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import torch
    from torch_reference import random_fid_inception

    from ddss.diagnostics import median_time
    from ddss.metrics import inception

    model, state, _ = random_fid_inception(seed=0, output_blocks=(3,))
    x = torch.from_numpy(images01(args.batch, args.size))

    def torch_pool():
        with torch.no_grad():
            return model(x)[0].flatten(1)

    with tempfile.TemporaryDirectory() as workdir:
        inception.save(os.path.join(workdir, "weights.safetensors"), inception.params_from_torch(state))
        np.save(os.path.join(workdir, "torch_pool.npy"), torch_pool().numpy())
        t_torch = median_time(torch_pool, repeats=args.repeats)
        results = {}
        for name, flags in CONFIGS:
            env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()}
            out = subprocess.run([sys.executable, __file__, "--worker", "--workdir", workdir, "--batch", str(args.batch),
                                  "--size", str(args.size), "--repeats", str(args.repeats)],
                                 env=env, capture_output=True, text=True, check=True)
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])

    first = next(iter(results.values()))
    print(f"FID Inception, batch {args.batch} of {args.size}x{args.size} -> 299x299, {os.cpu_count()} CPUs, "
          f"jax {first['jax']} ({first['backend']}), torch {torch.__version__} ({torch.get_num_threads()} threads)")
    print(f"  {'':28s} {'images/s':>9s} {'ms/batch':>9s} {'ours/torch':>10s} {'pool diff':>9s} "
          f"{'compile':>8s} {'XLA temp':>9s}")
    print(f"  {'pytorch-fid (torch, eager)':28s} {args.batch / t_torch:9.1f} {t_torch * 1e3:9.0f}")
    for name, r in results.items():
        print(f"  {'ddss jit, ' + name:28s} {args.batch / r['seconds']:9.1f} {r['seconds'] * 1e3:9.0f} "
              f"{t_torch / r['seconds']:9.2f}x {r['diff']:9.1e} {r['compile_s']:7.1f}s {r['temp_mib']:7.0f}MiB")


if __name__ == "__main__":
    main()
