"""Counting XLA compilations, for "changing values must not recompile" checks and benchmarks."""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import Iterator

import jax

_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompilationCounter:
    """Counts backend compilations, in total and per jitted function name."""

    def __init__(self):
        self.by_name: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.by_name.values())

    def count(self, fun_name: str) -> int:
        """Compilations of functions whose name contains `fun_name`."""
        return sum(n for name, n in self.by_name.items() if fun_name in name)

    def _listener(self, event: str, duration: float, **kwargs) -> None:
        del duration
        if event == _BACKEND_COMPILE_EVENT:
            name = str(kwargs.get("fun_name", "?"))
            self.by_name[name] = self.by_name.get(name, 0) + 1


@contextlib.contextmanager
def count_compilations() -> Iterator[CompilationCounter]:
    """`with count_compilations() as c: ...` then read `c.count('my_fn')` or `c.total`."""
    counter = CompilationCounter()
    jax.monitoring.register_event_duration_secs_listener(counter._listener)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(counter._listener)


def median_time(fn, *args, repeats: int) -> float:
    """Median wall time of fn(*args) over `repeats` calls, after one warm-up (compiling) call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)
