"""The DDSS objective ladder on the digits model: which loss, starting solver, learning rate and step
budget gives a learned sampler that wins *outside* the space it trained in.

  python benchmarks/ddss_ladder.py --workdir=DIR --k 5            # the whole ladder at K = 5
  python benchmarks/ddss_ladder.py --workdir=DIR --k 4 --rungs teacher-pixels@ddim-quadratic kid@dpm-solver++

Each rung trains one GGDM+PRED+TIME sampler with ddss/configs/digits_ddss.py's settings and the rung's
overrides, exporting the parameters with the best train-space FID on the validation bank unless the rung
says `val=teacher` (DIR/K<K>/<rung>/, resumable: rerunning skips finished rungs), then every export is scored
by the `evaluate` experiment beside the training-free baselines on the same 2000 held-out samples
(DIR/K<K>/evaluate/results.json). The printed table has both spaces: the evaluation network's FID,
precision and recall (which no loss or validation sees) and the digits classifier's FID (the space
the KID loss, the feature teacher and validation use).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=dot")  # as the CLI runs
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ddss.configs import digits_ddss, digits_evaluate  # noqa: E402
from ddss import experiments  # noqa: E402
from ddss.experiments import evaluation  # noqa: E402

STARTS = {"ddim-quadratic": dict(base="ddim", stride="quadratic"),
          "dpm-solver++": dict(base="dpm_solver++", stride="logsnr"),
          "dpm-solver++-quadratic": dict(base="dpm_solver++", stride="quadratic")}
# name -> (loss kind, loss overrides, train overrides); each is tried from every start in --starts.
LOSSES = {
    "kid": ("kid", {}, {}),
    "teacher-pixels": ("teacher", {"teacher_space": "pixels"}, {}),
    "teacher-features": ("teacher", {"teacher_space": "features"}, {}),
    # KID's cubic-kernel MMD² on 64-d features is O(1-10) per batch, the pixel teacher O(1e-2): weight 300
    # puts them on a par.
    "kid+teacher-pixels": ("kid+teacher", {"teacher_space": "pixels", "teacher_weight": 300.0}, {}),
    "teacher-pixels,lr=3e-2": ("teacher", {"teacher_space": "pixels"}, {"learning_rate": 3e-2}),
    "teacher-pixels,lr=3e-3": ("teacher", {"teacher_space": "pixels"}, {"learning_rate": 3e-3}),
    "teacher-pixels,steps=50": ("teacher", {"teacher_space": "pixels"}, {"steps": 50}),
    "teacher-pixels,steps=200": ("teacher", {"teacher_space": "pixels"}, {"steps": 200}),
    "teacher-pixels,lr=3e-2,steps=200": ("teacher", {"teacher_space": "pixels"}, {"learning_rate": 3e-2, "steps": 200}),
    # The main job's settings: validation by the distance to the teacher, not by the train-space FID.
    "teacher-pixels,lr=3e-2,steps=200,val=teacher": ("teacher", {"teacher_space": "pixels"},
                                                     {"learning_rate": 3e-2, "steps": 200, "validation": "teacher"}),
    "teacher-pixels,lr=3e-2,steps=400": ("teacher", {"teacher_space": "pixels"}, {"learning_rate": 3e-2, "steps": 400}),
    # The teacher on the time-quadratic grid: 2.4x closer to the converged ODE than λ-uniform at 20 steps
    # here (mean squared pixel distance to a 200-step solution), yet a worse teacher out of space.
    "teacher-pixels-quadratic,lr=3e-2,steps=200": ("teacher", {"teacher_space": "pixels", "teacher_stride": "quadratic"},
                                                   {"learning_rate": 3e-2, "steps": 200}),
    # K = 10's start is already as good as the 20-step λ-uniform teacher; a 50-step quadratic-grid teacher is closer to
    # the converged ODE.
    "teacher-pixels-quadratic50": ("teacher", {"teacher_space": "pixels", "teacher_stride": "quadratic",
                                               "teacher_steps": 50}, {}),
}
DEFAULT_RUNGS = ("kid@ddim-quadratic", "teacher-pixels@ddim-quadratic", "teacher-features@ddim-quadratic",
                 "kid+teacher-pixels@ddim-quadratic", "teacher-pixels,lr=3e-2@ddim-quadratic",
                 "teacher-pixels,steps=50@ddim-quadratic", "kid@dpm-solver++", "teacher-pixels@dpm-solver++",
                 "teacher-pixels@dpm-solver++-quadratic")
# The starts, and the best training-free rows at K = 3, 4, 5, 10 of ddss/configs/digits_baselines.py.
METHODS = ("ddim-quadratic", "dpm-solver++(2m)-logsnr", "dpm-solver++(2m)-quadratic", "unipc(bh2,2)-quadratic",
           "unipc(bh2,3)-quadratic")


def rung_config(k: int, loss: str, start: str):
    kind, loss_overrides, train_overrides = LOSSES[loss]
    config = digits_ddss.get_config()
    config.num_steps, config.methods = (k,), ()
    config.learn = (("ggdm+pred+time", kind),)
    config.init.update(**STARTS[start])
    # Every loss and optimiser field explicit, so a rung does not follow the main job's defaults.
    config.loss.update(kind=kind, teacher_weight=1.0, teacher_space="features", teacher_steps=20,
                       teacher_stride="logsnr", teacher_pairs=2048)
    config.loss.update(**loss_overrides)
    config.train.update(steps=100, steps_by_k=(), learning_rate=1e-2, learning_rate_by_k=(), eval_every=25,
                        checkpoint_every=25, validation="fid")
    config.train.update(**train_overrides)
    return config


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--rungs", nargs="*", default=None,
                        help="LOSS@START names; default: DEFAULT_RUNGS")
    parser.add_argument("--methods", nargs="*", default=METHODS)
    args = parser.parse_args()
    rungs = args.rungs or DEFAULT_RUNGS
    root = os.path.join(os.path.expanduser(args.workdir), f"K{args.k}")
    exports = []
    for rung in rungs:
        loss, _, start = rung.partition("@")
        if loss not in LOSSES or start not in STARTS:
            raise SystemExit(f"Unknown rung {rung!r}: LOSS@START with LOSS in {list(LOSSES)}, START in {list(STARTS)}.")
        config = rung_config(args.k, loss, start)
        workdir = os.path.join(root, rung)
        row = experiments.run(config, workdir)["rows"][0]
        exports.append((rung, os.path.join(workdir, row["export"])))
    config = digits_evaluate.get_config()
    config.samplers = tuple(path for _, path in exports)
    config.labels = tuple(rung for rung, _ in exports)
    config.methods = tuple(args.methods)
    evaluate_dir = os.path.join(root, "evaluate")
    shutil.rmtree(evaluate_dir, ignore_errors=True)  # scores of this rung set only: derived, so recomputed
    results = experiments.run(config, evaluate_dir)
    print(f"\nK = {args.k}: ladder in both spaces (2000 held-out samples)")
    print(evaluation.format_table([r for r in results["rows"] if r["K"] == args.k or r["method"] == "data"]))


if __name__ == "__main__":
    main()
