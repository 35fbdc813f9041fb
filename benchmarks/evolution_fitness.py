"""Does a search's ranking survive more fitness samples, and a space its fitness never saw?

  python benchmarks/evolution_fitness.py --workdir=DIR [--top 5] [--samples 2048]

DIR is a finished `ddss/configs/digits_evolution.py` run (or `digits_evolution_ddim`: the searched
solver and seed grid are read from DIR/config.json). For every search under DIR/runs/, the `--top`
genomes by search fitness (256 fixed-noise samples in the digits classifier's space) are re-scored:
  * with `--samples` fresh fitness samples (another noise bank, same space): a bigger fitness budget;
  * on the run's 2000 held-out samples in the evaluation network's space (FID, precision, recall),
    which no fitness sees, with the deployed (statically pruned) sampler.
It prints one line per genome and, per budget, whether the joint winner still beats the timestep
winner under each score. Everything is measured in this run; nothing is read from the README.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")  # as the CLI runs
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

from ddss.configs import digits_evolution  # noqa: E402
from ddss import export  # noqa: E402
from ddss.experiments import evaluation, targets  # noqa: E402
from ddss.experiments import evolution as evo_exp  # noqa: E402
from ddss.search import evolution  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2048)
    args = parser.parse_args()
    workdir = os.path.expanduser(args.workdir)
    config = digits_evolution.get_config()
    with open(os.path.join(workdir, "config.json")) as f:
        run = json.load(f)
    if run.get("experiment") != "evolution":
        raise SystemExit(f"{workdir} holds a {run.get('experiment')!r} run, not an evolution run.")
    config.sampler, config.seed_stride = run["config"]["sampler"], run["config"]["seed_stride"]
    cfg = evo_exp.EvolutionConfig.from_config(config)
    target, noise_bank, key_sampler = evaluation.setup(cfg.base, os.path.join(workdir, "fitness_check"))
    # Another fitness bank, disjoint from the search's (fold 99 of the training root, not the search's fold 11).
    big = dataclasses.replace(cfg, fitness_samples=args.samples)
    rescore = evo_exp.Evaluator(big, target, targets.feature_network("digits"), None,
                                jax.random.fold_in(evaluation.training_key(cfg.base.seed), 99))
    results = {}
    for rundir in sorted(glob.glob(os.path.join(workdir, "runs", "evolution-*_B*"))):
        name = os.path.basename(rundir)
        mngr = ocp.CheckpointManager(os.path.abspath(os.path.join(rundir, "checkpoints")))
        state = evolution.SearchState.from_arrays(mngr.restore(mngr.latest_step(), args=ocp.args.StandardRestore()))
        mngr.close()
        top = state.best(args.top)
        refit = rescore([g for g, _ in top], desc=f"{name}: {args.samples} fitness samples")
        rows = []
        for (genome, fitness), fit_big in zip(top, refit):
            sampler = export.EvolvedSampler(kind=cfg.sampler, timesteps=genome.timesteps, skip=genome.skip_lists(),
                                            num_blocks=target.num_blocks, schedule=target.schedule,
                                            clip_denoised=cfg.base.clip_denoised)
            samples, _ = evo_exp.score_sampler(sampler, target, noise_bank, key_sampler, cfg.base.batch_size)
            s = target.score(samples)
            rows.append({"timesteps": genome.timesteps.tolist(), "skip": [list(x) for x in genome.skip_lists()],
                         "fitness_256": fitness, f"fitness_{args.samples}": float(fit_big),
                         "heldout_fid": s["fid"], "heldout_fid_train_space": s["fid_train_space"],
                         "precision": s["precision"], "recall": s["recall"]})
            print(f"{name}: t={genome.timesteps.tolist()} skipped={sum(map(len, genome.skip_lists()))} "
                  f"fitness {fitness:.3f} -> {float(fit_big):.3f} ({args.samples} samples); held-out FID "
                  f"{s['fid']:.3f} eval / {s['fid_train_space']:.3f} train space, P {s['precision']:.3f} "
                  f"R {s['recall']:.3f}", flush=True)
        results[name] = rows
    for budget in sorted({n.rsplit("_B", 1)[1] for n in results}):
        t, j = results.get(f"evolution-timesteps_B{budget}"), results.get(f"evolution-joint_B{budget}")
        if not (t and j):
            continue
        for score in ("fitness_256", f"fitness_{args.samples}", "heldout_fid_train_space", "heldout_fid"):
            # Each search's winner under its own fitness (row 0), and the best of its top genomes under this score.
            print(f"budget {budget} steps, {score}: joint winner {j[0][score]:.3f} vs timestep winner "
                  f"{t[0][score]:.3f} ({'joint' if j[0][score] < t[0][score] else 'timesteps'} better); best of top "
                  f"{args.top}: joint {min(r[score] for r in j):.3f}, timesteps {min(r[score] for r in t):.3f}")
    with open(os.path.join(workdir, "fitness_check.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
