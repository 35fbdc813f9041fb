"""How low can any sampler of the embedded digits model go? The floor under the quality bars.

  python benchmarks/model_floor.py [--ks 4 5 10] [--scales 0.995 1 1.002 1.005 1.01 1.015 1.02 1.03] [--ode-steps 20 50]

Scores, on the shipped digits model's 2000-sample held-out bank (the one every results table uses,
quantised to uint8, FID in the evaluation network's space with precision and recall there, and the
classifier's train-space FID beside it):
  * the best training-free rows at K = 4, 5 and 10 (UniPC bh2 and DPM-Solver++(2M), both on the
    time-quadratic grid), measured here, and the bar "½ the best training-free row at K = 5";
  * the model's own 1000-step ancestral sampler (the shipped cached ceiling);
  * DPM-Solver++(2M) on the quadratic grid at each `--ks`, and at each `--ode-steps` (the deterministic
    ODE the teacher losses imitate, near convergence), with ε scaled down by
    each of `--scales` (ε / s at every step: the exposure-bias correction of Ning et al., "Elucidating
    the Exposure Bias in Diffusion Models", ICLR 2024), the training-free change that moves a sampler
    off the model's own ODE;
  * the shipped K = 5 learned sampler (`ddss.models.digits.load_learned_sampler()`), or the DDSS
    export `--learned`, on ε / s likewise.
Per sampler it prints the scale with the lowest *train-space* FID: the scale a user would pick
without looking at the evaluation space.
Then it prints the lowest FID measured and its ratio to the bar. Everything is measured in this run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")  # as the CLI runs
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from ddss import schedules  # noqa: E402
from ddss.configs import digits_baselines  # noqa: E402
from ddss.experiments import evaluation  # noqa: E402
from ddss.experiments.baselines import BaselinesConfig  # noqa: E402
from ddss.models import digits  # noqa: E402
from ddss.samplers import dpm_solver  # noqa: E402

KEYS = ("fid", "precision", "recall", "fid_train_space")


def scaled_sampler(target, clip_denoised: bool):
    """DPM-Solver++ on ε / s: s is an argument, so every scale shares one compilation per K."""
    def sample(p, batch, key):
        (solver, scale), model_params = p
        x, eps, _ = evaluation.model_fns(target, model_params, batch)
        return dpm_solver.sample(solver, lambda x_, t_: eps(x_, t_) / scale, x, key,
                                 clip_denoised=clip_denoised, return_info=True)
    return jax.jit(sample)


def scaled_learned_sampler(target, path: str | None):
    """A learned sampler on ε / s: the shipped K = 5 one (`ddss.models.digits.load_learned_sampler`),
    or the DDSS export at `path`."""
    learned = digits.load_learned_sampler(path)
    name = f"learned K={learned.num_steps} ({'shipped' if path is None else os.path.basename(path)})"

    def sample(p, batch, key):
        model_params, scale = p
        x, eps, _ = evaluation.model_fns(target, model_params, batch)
        return learned.sample(lambda x_, t_: eps(x_, t_) / scale, x, key, return_info=True)
    return jax.jit(sample), name


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.995, 1.0, 1.002, 1.005, 1.01, 1.015, 1.02, 1.03])
    parser.add_argument("--ode-steps", type=int, nargs="*", default=[20, 50],
                        help="the step counts of the ODE solutions (none: --ode-steps with no value)")
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 5, 10], help="the few-step K to scale ε at")
    parser.add_argument("--learned", default=None,
                        help="a DDSS export (sampler.safetensors) to scale instead of the shipped K = 5 sampler")
    parser.add_argument("--workdir", default=None, help="where samples go (default: a temporary directory)")
    args = parser.parse_args()
    if any(s <= 0 for s in args.scales):
        raise SystemExit(f"--scales must be positive, got {args.scales}.")
    workdir = args.workdir or tempfile.mkdtemp(prefix="model_floor_")
    config = digits_baselines.get_config()
    config.methods = ("unipc(bh2,3)-quadratic", "dpm-solver++(2m)-quadratic")
    config.num_steps = tuple(sorted(set(args.ks) | {5, 10}))
    cfg = BaselinesConfig.from_config(config)
    target, bank, key = evaluation.setup(cfg, workdir)
    start = time.time()
    rows = evaluation.baseline_rows(cfg, target, bank, key, workdir)
    best5 = min(r["fid"] for r in rows if r["K"] == 5)
    lines = [(f"{r['method']} K={r['K']}", {k: r[k] for k in KEYS}) for r in rows]
    fn = scaled_sampler(target, cfg.clip_denoised)
    for k in args.ks + args.ode_steps:
        solver = dpm_solver.init(target.schedule, schedules.timesteps(target.schedule, "quadratic", k))
        for s in args.scales:
            samples, _ = evaluation.timed_samples(fn, ((solver, s), target.params), bank, key, cfg.batch_size)
            lines.append((f"dpm-solver++(2m)-quadratic K={k}, eps/{s:g}", target.score(samples)))
            print(f"  {lines[-1][0]}: FID {float(lines[-1][1]['fid']):.4f}", flush=True)
    learned_fn, learned_name = scaled_learned_sampler(target, args.learned)
    for s in args.scales:
        samples, _ = evaluation.timed_samples(learned_fn, (target.params, s), bank, key, cfg.batch_size)
        lines.append((f"{learned_name}, eps/{s:g}", target.score(samples)))
        print(f"  {lines[-1][0]}: FID {float(lines[-1][1]['fid']):.4f}", flush=True)
    # The scale a user would pick: by the train space, not the evaluation space.
    for prefix in [f"dpm-solver++(2m)-quadratic K={k}, " for k in args.ks] + [f"{learned_name}, "]:
        name, sc = min(((n, c) for n, c in lines if n.startswith(prefix)),
                       key=lambda line: float(line[1]["fid_train_space"]))
        print(f"  picked by the train-space FID: {name} (FID {float(sc['fid']):.4f}, P {float(sc['precision']):.3f})")
    width = max(len(n) for n, _ in lines)
    print(f"\n{'sampler':<{width}}  {'FID':>7} {'P':>6} {'R':>6} {'FID(train)':>10}")
    for name, sc in lines:
        print(f"{name:<{width}}  {float(sc['fid']):7.4f} {float(sc['precision']):6.3f} {float(sc['recall']):6.3f} "
              f"{float(sc['fid_train_space']):10.4f}")
    floor_name, floor = min(lines, key=lambda line: float(line[1]["fid"]))
    bar = best5 / 2
    print(f"\nbest training-free FID at K = 5: {best5:.4f}; the bar 'learned K = 5 <= half of it': {bar:.4f}")
    print(f"lowest FID of any sampler above: {float(floor['fid']):.4f} ({floor_name}), "
          f"{float(floor['fid']) / bar:.2f}x the bar")
    print(f"({time.time() - start:.0f} s, {jax.devices()[0].device_kind}, samples under {workdir})")


if __name__ == "__main__":
    main()
