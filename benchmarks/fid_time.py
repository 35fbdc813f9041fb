"""FID computation time for 2048-d statistics: our routes against scipy's `sqrtm` (pytorch-fid's).

  python benchmarks/fid_time.py                 # N = 10000 reference and sample features, 3 repeats
  python benchmarks/fid_time.py --quick         # 1 repeat

Features are synthetic but shaped like Inception pool features: non-negative, 2048-d, with a
fast-decaying covariance spectrum (a random rotation of power-law scales passed through a ReLU); the
sample set is a perturbed copy of the reference distribution, so the FID is small relative to the
traces, the regime where the trace term's round-off matters most. Timed, from float64 statistics:

  sqrtm          pytorch-fid's `calculate_frechet_distance` route (ours, step for step; pytorch-fid's
                 own function too when it is installed) — the reference value
  eigh float64   `fid.frechet_distance` (default method), on the host
  jax stats      `fid.jax_distance` under jit from float32 (μ, Σ), Σ_ref^{1/2} prepared once
                 (`fid.Reference`): eigh route, loses the small eigenvalues to float32 round-off
  jax features   `fid.jax_distance_of_features` under jit from the float32 features (nuclear-norm
                 route): on all N features, and on a 500-sample batch (a search fitness
                 evaluation) against float64 eigh on the same 500 features

Each line prints the median time, the speed-up over sqrtm and the relative difference from the
float64 reference value.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from ddss.diagnostics import median_time
from ddss.metrics import fid


def inception_like(n: int, dim: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(123).normal(size=(dim, dim)))[0]
    scales = 3.0 * (1.0 + np.arange(dim)) ** -0.8
    z = rng.normal(size=(n, dim)) * scales + shift * np.random.default_rng(7).normal(size=dim) * scales
    return np.maximum(z @ basis.T + 0.5, 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num", type=int, default=10000)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=500, help="samples per jitted fitness evaluation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats

    ref_feats = inception_like(args.num, args.dim, seed=0)
    gen_feats = inception_like(args.num, args.dim, seed=1, shift=0.3)
    mu_r, sigma_r = fid.statistics(ref_feats)
    mu_g, sigma_g = fid.statistics(gen_feats)
    print(f"FID of {args.dim}-d statistics from {args.num} features each; {os.cpu_count()} CPUs, "
          f"jax {jax.__version__} ({jax.default_backend()})")

    ref_value = fid.frechet_distance(mu_g, sigma_g, mu_r, sigma_r, method="sqrtm")
    t_sqrtm = median_time(lambda: fid.frechet_distance(mu_g, sigma_g, mu_r, sigma_r, method="sqrtm"), repeats=repeats)
    rows = [("sqrtm (pytorch-fid route)", t_sqrtm, ref_value)]
    try:  # pytorch-fid imports torchvision; tests/torch_reference.py knows how to load it here
        os.environ.setdefault("DDSS_REQUIRE_REFERENCES", "1")
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
        from torch_reference import pytorch_fid_score

        calculate_frechet_distance = pytorch_fid_score().calculate_frechet_distance
    except Exception:  # not installed: the route above is its code, step for step
        calculate_frechet_distance = None
    if calculate_frechet_distance is not None:
        value = float(calculate_frechet_distance(mu_g, sigma_g, mu_r, sigma_r))
        rows.append(("pytorch-fid itself", median_time(lambda: calculate_frechet_distance(mu_g, sigma_g, mu_r, sigma_r),
                                                         repeats=repeats), value))

    rows.append(("eigh float64 (default)",
                 median_time(lambda: fid.frechet_distance(mu_g, sigma_g, mu_r, sigma_r), repeats=repeats),
                 fid.frechet_distance(mu_g, sigma_g, mu_r, sigma_r)))

    start = time.perf_counter()
    reference = fid.Reference.from_stats(mu_r, sigma_r)
    prepare_s = time.perf_counter() - start
    distance = jax.jit(fid.jax_distance)
    mu32, sigma32 = jnp.asarray(mu_g, jnp.float32), jnp.asarray(sigma_g, jnp.float32)
    rows.append(("jax float32, jit (stats)", median_time(distance, mu32, sigma32, reference, repeats=repeats),
                 float(distance(mu32, sigma32, reference))))
    fitness = jax.jit(fid.jax_distance_of_features)
    gen32 = jnp.asarray(gen_feats, jnp.float32)
    rows.append(("jax float32, jit (features)", median_time(fitness, gen32, reference, repeats=repeats),
                 float(fitness(gen32, reference))))

    print(f"  {'route':28s} {'time':>9s} {'vs sqrtm':>9s} {'FID':>14s} {'rel. diff':>9s}")
    for name, seconds, value in rows:
        print(f"  {name:28s} {seconds:8.3f}s {t_sqrtm / seconds:8.1f}x {value:14.6f} "
              f"{abs(value - ref_value) / abs(ref_value):9.1e}")
    print(f"  (Reference.from_stats, once per reference: {prepare_s:.2f} s)")

    batch = gen_feats[:args.batch]
    want = fid.frechet_distance_of(batch, mu_r, sigma_r)  # float64 eigh on the same features
    batch32 = jnp.asarray(batch, jnp.float32)
    t_fit = median_time(fitness, batch32, reference, repeats=max(repeats, 5))
    got = float(fitness(batch32, reference))
    t_host = median_time(lambda: fid.frechet_distance_of(batch, mu_r, sigma_r), repeats=repeats)
    print(f"Fitness on {args.batch} features (N < D: rank-deficient, as in a search):")
    print(f"  float64 eigh on the host    {t_host:8.3f}s   FID {want:.6f}")
    print(f"  jax float32, jit (features) {t_fit:8.3f}s   FID {got:.6f}   {t_host / t_fit:.1f}x faster, "
          f"rel. diff {abs(got - want) / abs(want):.1e}")


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore", UserWarning)  # the rank-deficiency warning of the 500-sample batch
    main()
