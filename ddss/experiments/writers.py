"""Metric writers: a plain JSON-lines file always, TensorBoard event files when tensorboardX is installed.

Same surface as clu's metric writers (`write_scalars(step, dict)`, `flush`, `close`); clu's own
writers need TensorFlow, which this project does not install.
"""
from __future__ import annotations

import json
import os


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
