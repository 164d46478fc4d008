"""The event log's compaction while serving, in a process of its own at low CPU priority.

Compacting 30 seconds of a busy server's log (thousands of searches, tens of thousands of
impressions) is about a second of Python work: reading and checking each line, building the
tables. On a thread of the serving worker it held the worker's GIL, and every search of that
worker stopped with it: one stall of 200-500 ms per worker per round, the slowest requests of
an open-loop benchmark (RESULTS.md, issue 20). So each worker hands its rounds to one helper
process of its own (started with the worker, again if it dies; at ``nice``
:data:`NICENESS`, about a tenth of a worker's share of busy cores) and only counts the rows it
moved. The compaction itself is the same crash-safe, workspace-locked
:func:`~shopsearch.events.compaction.compact_event_log` any command runs.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from shopsearch.events.compaction import CompactionResult

#: Niceness added to the helper process (0-19; higher: a smaller share of busy cores).
NICENESS = 10

T = TypeVar("T")


def compact_at(root: str) -> CompactionResult:
    """:func:`~shopsearch.events.compaction.compact_event_log` of the workspace at ``root``
    (what the helper runs; imported here, so the helper starts light)."""
    from shopsearch.events.compaction import compact_event_log
    from shopsearch.store.workspace import Workspace

    return compact_event_log(Workspace.open(Path(root)))


def _in_background() -> None:
    """The helper's set-up: lower priority; Ctrl-C left to the worker that owns it (which
    stops it after its current job), not a traceback from each helper; and an end when that
    worker dies without stopping it (killed): the helper holds its own job queue's both ends,
    so it would otherwise wait for a job forever."""
    os.nice(NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_end_with_parent, daemon=True).start()


def _end_with_parent() -> None:
    """Exit this process once the process that started it has ended (its sentinel, a pipe
    made at the start, so a parent killed before this runs is seen too)."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        wait([parent.sentinel])
        os._exit(0)  # a compaction cut short is redone: it is crash-safe


class BackgroundProcess:
    """One helper process that runs jobs at lower CPU priority.

    A job is a picklable module-level function and its arguments; it runs in the helper, so
    its Python work never holds the caller's GIL. If the helper dies during a job, that job
    raises :class:`~concurrent.futures.process.BrokenProcessPool` and the next job starts a
    new helper; one found dead before a job is replaced for that job. Starting a helper stops
    the caller for a moment (its memory is mapped for the new process: ~85 ms from a 1 GB
    process), so a server starts it before its first search (:meth:`start`).
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> ProcessPoolExecutor:
        """Start the helper process now, if it is not running (returns its pool)."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1,
                # a fresh interpreter: a fork would copy the engine and the caller's threads
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_in_background,
            )
            self._pool.submit(os.getpid)  # the pool starts its process on the first job
        return self._pool

    async def run(self, job: Callable[..., T], *args: object) -> T:
        """``job(*args)`` in the helper process, awaited without blocking the event loop."""
        loop = asyncio.get_running_loop()
        try:
            queued = loop.run_in_executor(self.start(), job, *args)
        except BrokenProcessPool:  # the helper died between jobs: this job gets a new one
            await asyncio.to_thread(self.close)
            queued = loop.run_in_executor(self.start(), job, *args)
        try:
            return await queued
        except BrokenProcessPool:
            await asyncio.to_thread(self.close)
            raise

    def close(self) -> None:
        """Stop the helper (after the job it runs, if any)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


__all__ = ["NICENESS", "BackgroundProcess", "compact_at"]
