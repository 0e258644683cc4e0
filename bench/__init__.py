"""Benchmarks: each script states its question and the command that produced its figures in
BENCHMARKS.md."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeat: int = 1, warm_up: bool = False) -> float:
    """The median wall time of `repeat` calls of `fn` (after one untimed call with
    `warm_up`: tracing, caches)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)
