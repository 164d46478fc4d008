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
unfreezes (the replaced engine's cycles are collected then). While serving,
:func:`freeze_new` does the same every ``[serve] freeze_every_s`` for the objects created
since, most of them the caches' entries, without walking the frozen ones again.
"""

from __future__ import annotations

import gc
import time
from collections import deque
from typing import Any


def freeze_new() -> float:
    """Collect what is not frozen yet, then freeze the survivors; the milliseconds it took.

    The pause walks only the objects created since the last freeze (the served caches fill
    with long-lived entries; unfrozen, every full collection would walk them all). A frozen
    object that later becomes part of a garbage cycle stays until the next
    :func:`settle_heap` (a reload); the caches' entries hold no cycles.
    """
    start = time.perf_counter()
    gc.collect()
    gc.freeze()
    return 1000 * (time.perf_counter() - start)


def settle_heap() -> float:
    """Collect, then freeze every surviving object; the milliseconds it took."""
    gc.unfreeze()  # the frozen objects are collected again too
    return freeze_new()


class CollectorPauses:
    """Every collection's generation and duration (seconds), from :meth:`start` to
    :meth:`stop`, kept until :meth:`drain` (the server's ``shopsearch_gc_pause_seconds``).

    The collector's callback only appends to a deque: it runs wherever a collection starts,
    possibly inside code holding a lock (a Prometheus value's, for one), so it must not take
    one itself; the pauses are handed on later, from ordinary code.
    """

    def __init__(self, keep: int = 10_000) -> None:
        self._pending: deque[tuple[int, float]] = deque(maxlen=keep)
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._pending.append((int(info["generation"]), time.perf_counter() - self._started))

    def start(self) -> None:
        """Begin recording."""
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        """Stop recording."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def drain(self) -> list[tuple[int, float]]:
        """The pauses recorded since the last drain, oldest first."""
        out: list[tuple[int, float]] = []
        while self._pending:
            try:
                out.append(self._pending.popleft())
            except IndexError:  # drained by another thread meanwhile
                break
        return out


__all__ = ["CollectorPauses", "freeze_new", "settle_heap"]
