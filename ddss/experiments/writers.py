"""Metric writers: a plain JSON-lines file always, TensorBoard event files when tensorboardX is installed;
and the run description that keeps a resumed run directory from mixing two configurations.

Same surface as clu's metric writers (`write_scalars(step, dict)`, `flush`, `close`); clu's own
writers need TensorFlow, which this project does not install.

In a multi-host run only process 0 writes (`ddss.parallel.main_only`): the other processes check
what they would check, and their metric writers write nothing.
"""
from __future__ import annotations

import json
import os

from ddss import parallel


@parallel.main_only
def write_json(path: str, value, *, indent: int | None = 2) -> None:
    """`value` as JSON at `path`, atomically (a kill leaves the old file or the new one, never half of
    one); on process 0 only."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=indent)
    os.replace(tmp, path)


def _flatten(tree, prefix: str = "") -> dict:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def _short(value, width: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _holds_work(workdir: str) -> bool:
    """True when the directory holds any file besides its config.json record (empty folders do not count)."""
    for root, _, files in os.walk(workdir):
        if any(not (root == workdir and f == "config.json") for f in files):
            return True
    return False


def claim_workdir(workdir: str, config) -> None:
    """`_claim`, with every process reading the directory before process 0 writes to it."""
    parallel.sync("claim_workdir:read")
    _claim(workdir, config)
    parallel.sync("claim_workdir")  # no process starts work before the directory is claimed


def _claim(workdir: str, config) -> None:
    """Records which experiment, with which configuration, a work directory holds (DIR/config.json: every
    field of the resolved config, so the model or mixture, schedule, T, seeds and feature networks all
    count); refuses to run a different experiment or configuration there, naming the differing fields.

    A rerun of the same configuration resumes or reuses what is there; anything else would mix results
    of two settings (a sampler trained for one mixture scored as another's, one experiment's
    results.json overwriting another's). A directory that holds nothing but its config.json (the run
    stopped before writing anything, e.g. at a missing file) is taken over by the new configuration."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"The work directory {workdir} is a file, not a directory: pass a directory to --workdir.")
    c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    description = json.loads(json.dumps({"experiment": c.get("experiment", ""), "config": c}, default=str))
    path = os.path.join(workdir, "config.json")
    if os.path.exists(path):
        try:
            with open(path) as f:
                previous = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path} is damaged ({e}): it records what {workdir} holds, so it cannot be reused "
                             "safely. Use a new --workdir, or delete that directory to start over.") from None
        if previous == description:
            return
        if _holds_work(workdir):  # else (a run that stopped at a bad path, say): taken over below
            if previous.get("experiment") != description["experiment"]:
                raise ValueError(f"{workdir} holds a {previous.get('experiment')!r} run; this is a "
                                 f"{description['experiment']!r} run. Use a new --workdir (results never overwrite "
                                 "another experiment's).")
            old, new = _flatten(previous.get("config", {})), _flatten(description["config"])
            changed = [k for k in sorted(set(old) | set(new)) if old.get(k, "<unset>") != new.get(k, "<unset>")]
            shown = "; ".join(f"{k}: {_short(old.get(k, '<unset>'))} → {_short(new.get(k, '<unset>'))}"
                              for k in changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise ValueError(f"{workdir} holds a run with a different configuration ({shown}). Use a new --workdir, "
                             "or delete that directory to start over.")
    elif os.path.exists(os.path.join(workdir, "results.json")):
        raise ValueError(f"{workdir} holds results of a run that did not record its configuration (no config.json), "
                         "so they cannot be matched with this one. Use a new --workdir.")
    os.makedirs(workdir, exist_ok=True)
    write_json(path, description)


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
    write_json(path, description)


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut short by a kill
        return 2**62


class MetricWriter:
    """Appends to DIR/metrics.jsonl (and TensorBoard events). `keep_through=S`: a run resuming after step
    S first drops the rows logged after S (the killed run logged them, the resumed one logs them again),
    so no step appears twice; -1 drops every row (a run starting over). On every process but process 0
    of a multi-host run it writes nothing."""

    def __init__(self, workdir: str, *, tensorboard: bool = True, keep_through: int | None = None):
        self._file = self._tb = None
        if not parallel.is_main_process():
            return
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "metrics.jsonl")
        if keep_through is not None and os.path.exists(path):
            with open(path) as f:
                kept = [line for line in f if line.strip() and _step_of(line) <= keep_through]
            with open(path + ".tmp", "w") as f:
                f.writelines(kept)
            os.replace(path + ".tmp", path)
        self._file = open(path, "a")
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                SummaryWriter = None
            if SummaryWriter is not None:
                purge = {} if keep_through is None else {"purge_step": keep_through + 1}
                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), **purge)

    def write_scalars(self, step: int, scalars: dict[str, float]) -> None:
        if self._file is None:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        self._file.write(json.dumps({"step": int(step), **scalars}) + "\n")
        self._file.flush()  # readable while a long run is going
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, int(step))

    def flush(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._file is None:
            return
        self.flush()
        self._file.close()
        if self._tb is not None:
            self._tb.close()
