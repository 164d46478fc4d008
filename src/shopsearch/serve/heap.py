"""Keeping the cyclic garbage collector's pauses short in a server process.

A loaded engine holds hundreds of thousands of long-lived Python objects (product keys, id
maps, per-product feature tables). CPython's collector visits every object of the oldest
generation in a full collection, which the server's steady churn of short-lived objects (the
requests, the recent searches of :mod:`shopsearch.events.searches`) triggers every so often: on
51k products one full collection takes ~170 ms, and every search of the worker waits behind it.

:func:`settle_heap` runs once after an engine is loaded (and after each reload swaps one in):
it collects what is garbage now and moves every surviving object to the permanent generation
(``gc.freeze``), which the collector never visits. Objects frozen still die by reference
counting; only reference cycles among them would stay, which is why each settle first
unfreezes (the replaced engine's cycles are collected then).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any


def settle_heap() -> float:
    """Collect, then freeze every surviving object; the milliseconds it took."""
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return 1000 * (time.perf_counter() - start)


class CollectorPauses:
    """Reports every collection's generation and duration (seconds) to ``observe``, from
    :meth:`start` to :meth:`stop` (the server's ``shopsearch_gc_pause_seconds``)."""

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self.observe = observe
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.observe(int(info["generation"]), time.perf_counter() - self._started)

    def start(self) -> None:
        """Begin reporting."""
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        """Stop reporting."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


__all__ = ["CollectorPauses", "settle_heap"]
