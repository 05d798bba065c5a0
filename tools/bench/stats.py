"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_calls(fn: Callable[[], object], n: int, warmup: int = 200) -> np.ndarray:
    """Per-call wall time in microseconds for `n` calls of `fn`."""
    for _ in range(warmup):
        fn()
    out = np.empty(n)
    clock = time.perf_counter_ns
    for i in range(n):
        start = clock()
        fn()
        out[i] = (clock() - start) / 1000.0
    return out


def summary(samples_us: np.ndarray) -> str:
    return f"median {np.median(samples_us):7.2f} µs   p99 {np.percentile(samples_us, 99):7.2f} µs"
