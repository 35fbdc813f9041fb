"""`import ddss` against `import jax, flax, optax` alone, each in fresh interpreters.

  python benchmarks/import_time.py [--repeats 7]

Prints the median wall time of each import over `--repeats` fresh processes, their ratio, and the
heavy modules (TFDS, TensorFlow, matplotlib, orbax, the search and experiment code) that `import ddss`
loaded (none is the goal: they load when first used).
"""
import argparse
import statistics
import subprocess
import sys

HEAVY = ("tensorflow_datasets", "tensorflow", "matplotlib", "orbax", "ddss.search", "ddss.experiments",
         "ddss.metrics", "ddss.data.tfds")


def timed(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    base, ours = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same file-cache state
        base.append(timed("import jax, flax, optax"))
        ours.append(timed("import ddss"))
    loaded = subprocess.run([sys.executable, "-c", f"import sys, ddss; print([m for m in {HEAVY!r} if m in sys.modules])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    b, o = statistics.median(base), statistics.median(ours)
    print(f"import jax, flax, optax : {b:.3f} s (median of {args.repeats})")
    print(f"import ddss             : {o:.3f} s (median of {args.repeats})")
    print(f"ratio ddss / jax+flax+optax: {o / b:.2f}")
    print(f"heavy modules loaded by import ddss: {loaded}")


if __name__ == "__main__":
    main()
