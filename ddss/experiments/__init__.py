"""Experiments: the loops that jit, checkpoint, log and write results. One `run(config, workdir)` each."""
from ddss.experiments import (baselines, ddss, evaluate, evolution, ref_stats, search_then_learn, train,
                              train_classifier)

EXPERIMENTS = {
    "baselines": baselines.run,
    "ddss": ddss.run,
    "evaluate": evaluate.run,
    "evolution": evolution.run,
    "ref_stats": ref_stats.run,
    "search_then_learn": search_then_learn.run,
    "train": train.run,
    "train_classifier": train_classifier.run,
}


def run(config, workdir: str):
    """Runs the experiment named by `config.experiment`."""
    if config.experiment not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {config.experiment!r}; choose one of {sorted(EXPERIMENTS)}.")
    return EXPERIMENTS[config.experiment](config, workdir)
