"""Command line: `python -m ddss.main --config=configs/NAME.py --workdir=DIR [--config.FIELD=VALUE]`.

The only module that reads flags; everything else takes a config and a work directory.
"""
from absl import app, flags
from ml_collections import config_flags

from ddss import experiments

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results, samples, plots and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    experiments.run(_CONFIG.value, _WORKDIR.value)


def cli():
    app.run(main)


if __name__ == "__main__":
    cli()
