"""Metric writers: a plain JSON-lines file always, TensorBoard event files when tensorboardX is installed;
and the run description that keeps a resumed run directory from mixing two configurations.

Same surface as clu's metric writers (`write_scalars(step, dict)`, `flush`, `close`); clu's own
writers need TensorFlow, which this project does not install.
"""
from __future__ import annotations

import json
import os


def check_run_description(rundir: str, description: dict, *, what: str = "run", redo: str = "run it again") -> None:
    """Records what a run directory holds (run.json); refuses to resume or reuse it for a different setting."""
    description = json.loads(json.dumps(description))
    path = os.path.join(rundir, "run.json")
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        if previous != description:
            changed = sorted(k for k in description if previous.get(k) != description[k])
            raise ValueError(f"{rundir} holds a {what} with a different configuration ({', '.join(changed)} changed). "
                             f"Use a new --workdir, or delete that run directory to {redo}.")
        return
    with open(path, "w") as f:
        json.dump(description, f, indent=2)


class MetricWriter:
    def __init__(self, workdir: str, *, tensorboard: bool = True):
        os.makedirs(workdir, exist_ok=True)
        self._file = open(os.path.join(workdir, "metrics.jsonl"), "a")
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        scalars = {k: float(v) for k, v in scalars.items()}
        self._file.write(json.dumps({"step": int(step), **scalars}) + "\n")
        self._file.flush()  # readable while a long run is going
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, int(step))

    def flush(self) -> None:
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()
        if self._tb is not None:
            self._tb.close()
