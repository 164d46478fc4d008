"""Latency measurement: one call at a time, warm-up first, percentiles over the rest."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def measure(call: Callable[[T], object], inputs: Sequence[T], warmup: int = 20) -> dict[str, float]:
    """Run ``call`` on each input one at a time; ``qps``, ``p50_ms``, ``p95_ms``, ``p99_ms``."""
    for item in inputs[:warmup]:
        call(item)
    latencies = np.empty(len(inputs), dtype=np.float64)
    start = time.perf_counter()
    for i, item in enumerate(inputs):
        t0 = time.perf_counter()
        call(item)
        latencies[i] = time.perf_counter() - t0
    total = time.perf_counter() - start
    return {
        "qps": len(inputs) / total,
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p95_ms": 1000 * float(np.percentile(latencies, 95)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "queries": float(len(inputs)),
    }


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """``call()`` and its wall time in seconds."""
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def percentiles_ms(seconds: Sequence[float], prefix: str = "") -> dict[str, float | None]:
    """``{prefix}p50_ms``, ``p95_ms`` and ``p99_ms`` of latencies in seconds (None when empty)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    if not ms.size:
        return dict.fromkeys(f"{prefix}p{p}_ms" for p in (50, 95, 99))
    return {f"{prefix}p{p}_ms": float(np.percentile(ms, p)) for p in (50, 95, 99)}
