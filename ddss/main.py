"""Command line: `python -m ddss.main --config=configs/NAME.py --workdir=DIR [--config.FIELD=VALUE]`.

The only module that reads flags; everything else takes a config and a work directory.

The command line owns its process, so it also picks XLA's fastest CPU path before JAX starts its
backend: `--xla_cpu_experimental_ynn_fusion_type=dot` hands dots and convolutions to YNNPACK
(measured on 2 CPU cores: the FID Inception 2.7× faster, the digits UNet 1.4-1.8×; see
benchmarks/inception_throughput.py). GPU and TPU ignore it. Your own XLA_FLAGS that set the option
win; DDSS_XLA_DEFAULTS=0 leaves XLA_FLAGS untouched. Library code never touches flags.
"""
import os

from absl import app, flags, logging
from ml_collections import config_flags

from ddss import experiments

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for results, samples, plots and checkpoints.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
    experiments.run(_CONFIG.value, _WORKDIR.value)


CPU_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=dot",)


def xla_flags(environ) -> str | None:
    """The XLA_FLAGS the command line runs with: the user's, plus our CPU defaults they do not set."""
    current = environ.get("XLA_FLAGS", "")
    if environ.get("DDSS_XLA_DEFAULTS", "1") == "0":
        return current or None
    extra = [f for f in CPU_XLA_FLAGS if f.split("=")[0] not in current]
    return " ".join([current, *extra]).strip() or None


def cli():
    flags_value = xla_flags(os.environ)  # before JAX creates its backend, which reads XLA_FLAGS once
    if flags_value is not None:
        os.environ["XLA_FLAGS"] = flags_value
    app.run(main)


if __name__ == "__main__":
    cli()
