"""AutoDiffusion's evaluator and deployed samplers, measured on the shipped digits model.

  python benchmarks/evolution.py                  # all three parts
  python benchmarks/evolution.py --sampler DIR/runs/evolution-joint_K4/sampler.safetensors

1. Evaluator throughput: P = 16 candidates (K = 4 DDIM, random timesteps and skip masks), each
   sampling N images (N = 16, 64) and scored by the float32 FID in the digits classifier's space.
   vmapped = one jitted call of `evolution.fitness_fn` over the whole chunk; loop = a Python loop over
   the candidates calling one jitted single-candidate fitness (traced timesteps and mask, so it
   compiles once too). Prints candidates per second, the ratio, and each program's temporary memory.
2. Compilations over a 3-generation search (population 16, fixed K) through the experiment's
   `Evaluator`: the goal is one per chunk shape.
3. Deployed sampler wall time: a pruned searched sampler (skip lists compiled statically) against
   the same timesteps with the full network, sampling 1000 images; with `--sampler` the export of a
   search, otherwise K = 4 uniform steps skipping half the blocks of each step (fixed seed).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")  # what the CLI runs with

import jax
import jax.numpy as jnp
import numpy as np
import ml_collections

from ddss import diagnostics, export, load_sampler
from ddss.experiments import evolution as evo_exp
from ddss.experiments import targets
from ddss.metrics import features, fid
from ddss.search import evolution


def throughput(target, extractor, reference, repeats: int) -> None:
    fn = evolution.fitness_fn("ddim", target.schedule, target.apply_skip, extractor.apply, reference,
                              clip_denoised=False)
    vmapped = jax.jit(fn)
    single = jax.jit(lambda t, m, *rest: jax.tree.map(lambda a: a[0], fn(t[None], m[None], *rest)))
    space = evolution.Space.fixed(1000, target.num_blocks, 4)
    genomes = [evolution.random_genome(jax.random.key(i), space, 0.5) for i in range(16)]
    t, masks = (jnp.asarray(a) for a in evolution.stack(genomes))
    key = jax.random.key(0)
    print("\n1. evaluator throughput, P = 16 candidates, K = 4 DDIM, digits UNet + classifier FID")
    print("| N per candidate | vmapped cand/s | loop cand/s | vmapped / loop | temp memory vmapped | temp memory loop |")
    print("|---|---|---|---|---|---|")
    for n in (16, 64):
        noise = jax.random.normal(jax.random.key(1), (n,) + tuple(target.image_shape))
        args = (noise, key, target.params, extractor.params)

        def loop():
            return [single(t[i], masks[i], *args) for i in range(len(genomes))]

        t_v = diagnostics.median_time(vmapped, t, masks, *args, repeats=repeats)
        t_l = diagnostics.median_time(loop, repeats=repeats)
        mem = lambda f, *a: f.lower(*a).compile().memory_analysis().temp_size_in_bytes / 2**20
        m_v, m_l = mem(vmapped, t, masks, *args), mem(single, t[0], masks[0], *args)
        print(f"| {n} | {16 / t_v:.2f} | {16 / t_l:.2f} | {t_l / t_v:.2f}× | {m_v:.1f} MiB | {m_l:.1f} MiB |")


def compilations(target) -> None:
    config = ml_collections.ConfigDict(dict(
        experiment="evolution", model="digits", seed=0, num_steps=(4,), methods=(), reference_steps=1000,
        num_samples=16, batch_size=16, clip_denoised=False, fitness_samples=16, chunk_size=8,
        search=dict(population=16, parents=4, mutants=6, crossovers=4, generations=3, seed_mutants=3,
                    stage1_generations=1, ramp_generations=1)))
    cfg = evo_exp.EvolutionConfig.from_config(config)
    search = dataclasses.replace(cfg.search, max_skip_fraction=0.5)  # pruning from generation 1 on
    space = evolution.Space.fixed(1000, target.num_blocks, 4)  # fixed K: one chunk shape
    evaluate = evo_exp.Evaluator(cfg, target, targets.feature_network("digits"), None, jax.random.key(0))
    state = evolution.SearchState(key=jax.random.key(1))
    seed = evo_exp.seed_genome(cfg, target.schedule, target.num_blocks, 4)
    with diagnostics.count_compilations() as counter:
        while state.generation < search.generations:
            cands, _ = evolution.propose(state, search, space, seed)
            state = evolution.record(state, search, cands, evaluate(cands))
    fitness = counter.count("one")
    print(f"\n2. compilations over a 3-generation joint search (population 16, chunks of {evaluate.chunk}, "
          f"{len(state.genomes)} candidates, masks and timesteps changing every chunk): "
          f"{fitness} of the vmapped fitness, {counter.total} in total (incl. small host-side ops)")


def deployed(target, path: str | None, repeats: int) -> None:
    if path:
        sampler = load_sampler(path, num_blocks=target.num_blocks)
    else:
        rng = np.random.default_rng(0)
        L = target.num_blocks
        mask = np.zeros((4, L), bool)
        for row in mask:
            row[rng.choice(L, L // 2, replace=False)] = True
        tmp = "/tmp/ddss_bench_evolved.safetensors"
        export.save_evolved_sampler(tmp, [999, 749, 499, 249], mask, kind="ddim", schedule=target.schedule,
                                    clip_denoised=False)
        sampler = load_sampler(tmp, num_blocks=L)
    unpruned = dataclasses.replace(sampler, skip=((),) * sampler.num_steps)
    noise = jax.random.normal(jax.random.key(2), (1000,) + tuple(target.image_shape))
    key = jax.random.key(3)
    times = {}
    for name, s in (("pruned (static skips)", sampler), ("unpruned", unpruned)):
        fn = evo_exp.deployed_sample_fn(s, target)
        times[name] = diagnostics.median_time(fn, target.params, noise, key, repeats=repeats)
    frac = 1 - sampler.block_executions / (sampler.num_steps * sampler.num_blocks)
    print(f"\n3. deployed sampler, K = {sampler.num_steps} ({sampler.kind}), {frac:.0%} of block executions skipped, "
          f"1000 samples: pruned {times['pruned (static skips)']:.3f} s, unpruned {times['unpruned']:.3f} s, "
          f"pruned / unpruned = {times['pruned (static skips)'] / times['unpruned']:.3f}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sampler", default=None, help="an evolution export to time (default: a fixed pruning)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", default="123")
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind} × {jax.device_count()}, jax {jax.__version__}")
    target = targets.digits_target()
    extractor = features.get("digits")
    reference = fid.Reference.from_stats(*target.train.reference_stats)
    start = time.time()
    if "1" in args.parts:
        throughput(target, extractor, reference, args.repeats)
    if "2" in args.parts:
        compilations(target)
    if "3" in args.parts:
        deployed(target, args.sampler, args.repeats)
    print(f"\n({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
