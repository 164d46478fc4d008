"""The durable event log: served searches and posted events appended to a segment file.

Each server process owns one open segment, ``W/log/<UTC start>-<pid>-<random>.wal``, and appends
checksummed JSON lines (:mod:`.records`) to it from one writer thread:

- :meth:`EventLog.submit` queues a line and returns at once (searches); the writer waits up to
  ``linger_s`` for more lines, then writes and fsyncs them together;
- :meth:`EventLog.write` queues lines and resolves only once they are fsync'd (``POST
  /events``); the writer then starts its next write without lingering, and every line queued
  meanwhile shares that write and that fsync (group commit).

The segment file is created under a temporary name, locked with ``flock`` and only then renamed to
``*.wal``, and the lock is held for as long as the process may append to it. A segment whose
lock can be taken is therefore finished for good (its owner closed it or died), which is how
compaction (:mod:`.compaction`) tells a live segment from one it may delete. A segment is closed
and a new one started when it reaches ``segment_bytes``, or after a write error (the state of a
file whose fsync failed is unknown, so it is never appended to again).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from shopsearch.store.atomic import fsync_dir

LOG_DIR = "log"
SEGMENT_SUFFIX = ".wal"

logger = logging.getLogger(__name__)


class LogObserver(Protocol):
    """Receives the writer's measurements (see :class:`~shopsearch.serve.metrics.Metrics`)."""

    def log_written(self, lines: int, nbytes: int, seconds: float) -> None:
        """A batch of ``lines`` was written and fsync'd in ``seconds``."""

    def log_dropped(self, lines: int) -> None:
        """``lines`` were not logged (queue full or write error)."""


class _Waiter:
    """Resolves an awaiting coroutine from the writer thread."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[None] = self.loop.create_future()

    def settle(self, error: BaseException | None) -> None:
        # A closed event loop (RuntimeError) has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._set, error)

    def _set(self, error: BaseException | None) -> None:
        if self.future.done():
            return
        if error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(error)


@dataclass
class _Entry:
    data: bytes
    lines: int
    waiter: _Waiter | threading.Event | None


@dataclass
class _Segment:
    path: Path
    fd: int
    size: int = 0


class EventLog:
    """Appends log lines to this process's segment under ``directory``, with group commit.

    Args:
        directory: the log folder (``W/log``).
        linger_s: longest a submitted (not awaited) line waits for company before its write.
        segment_bytes: size at which the segment is closed and a new one started.
        max_queued_bytes: queued bytes above which :meth:`submit` drops lines (disk too slow).
        observer: receives write and drop counts.
    """

    def __init__(
        self,
        directory: Path,
        *,
        linger_s: float = 0.005,
        segment_bytes: int = 64 << 20,
        max_queued_bytes: int = 64 << 20,
        observer: LogObserver | None = None,
    ) -> None:
        self.directory = directory
        self.linger_s = linger_s
        self.segment_bytes = segment_bytes
        self.max_queued_bytes = max_queued_bytes
        self.observer = observer
        self._cond = threading.Condition()
        self._queue: list[_Entry] = []
        self._queued_bytes = 0
        self._first_at = 0.0
        self._urgent = False
        self._closing = False
        self._thread: threading.Thread | None = None
        self._segment: _Segment | None = None

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the first segment and start the writer thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._segment = self._open_segment()
        self._thread = threading.Thread(target=self._run, name="shopsearch-event-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write and fsync everything queued, stop the writer and close the segment."""
        thread = self._thread
        if thread is None:
            return
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        thread.join()
        self._thread = None
        self._close_segment()

    @property
    def segment(self) -> Path | None:
        """The segment being appended to (``None`` between a rotation and the next write)."""
        segment = self._segment
        return None if segment is None else segment.path

    # -- appending -------------------------------------------------------------------------------
    def submit(self, data: bytes, lines: int = 1) -> bool:
        """Queue ``data`` (whole lines) to be written within ``linger_s``; ``False`` if dropped."""
        with self._cond:
            self._check_open()
            if self._queued_bytes + len(data) > self.max_queued_bytes:
                dropped = True
            else:
                dropped = False
                self._enqueue(_Entry(data, lines, None))
        if dropped and self.observer is not None:
            self.observer.log_dropped(lines)
        return not dropped

    async def write(self, data: bytes, lines: int = 1) -> None:
        """Append ``data`` (whole lines) and return once it is fsync'd.

        Raises:
            OSError: the write or fsync failed; nothing of ``data`` can be relied on.
            RuntimeError: the log is not started or already closed.
        """
        waiter = _Waiter()
        with self._cond:
            self._check_open()
            self._urgent = True
            self._enqueue(_Entry(data, lines, waiter))
        await waiter.future

    def flush(self) -> None:
        """Block until everything queued so far is written and fsync'd."""
        done = threading.Event()
        with self._cond:
            self._check_open()
            self._urgent = True
            self._enqueue(_Entry(b"", 0, done))
        done.wait()

    def _check_open(self) -> None:
        if self._thread is None or self._closing:
            raise RuntimeError("the event log is not running; start() it (server start-up)")

    def _enqueue(self, entry: _Entry) -> None:
        first = not self._queue
        if first:
            self._first_at = time.monotonic()
        self._queue.append(entry)
        self._queued_bytes += len(entry.data)
        # The writer waits for a first line, then for its linger deadline: a line joining a
        # lingering batch need not wake it (a wake-up per search cost CPU), an urgent one must.
        if first or self._urgent:
            self._cond.notify_all()

    # -- the writer thread -----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                deadline = self._first_at + self.linger_s
                while not (self._urgent or self._closing):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                batch, self._queue = self._queue, []
                self._queued_bytes = 0
                self._urgent = False
            self._write(batch)

    def _write(self, batch: list[_Entry]) -> None:
        data = b"".join(entry.data for entry in batch)
        lines = sum(entry.lines for entry in batch)
        error: OSError | None = None
        start = time.perf_counter()
        if data:
            try:
                segment = self._segment or self._open_segment()
                self._segment = segment
                _write_all(segment.fd, data)
                os.fdatasync(segment.fd)
                segment.size += len(data)
            except OSError as exc:
                logger.exception("event log write failed; starting a new segment")
                error = exc
                self._close_segment()
        if self.observer is not None and lines:
            if error is None:
                self.observer.log_written(lines, len(data), time.perf_counter() - start)
            else:
                self.observer.log_dropped(lines)
        for entry in batch:
            if isinstance(entry.waiter, threading.Event):
                entry.waiter.set()
            elif entry.waiter is not None:
                entry.waiter.settle(error)
        if self._segment is not None and self._segment.size >= self.segment_bytes:
            self._close_segment()

    def _open_segment(self) -> _Segment:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}{SEGMENT_SUFFIX}"
        final = self.directory / name
        tmp = self.directory / f".{name}.new"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, final)
            fsync_dir(self.directory)
        except OSError:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return _Segment(final, fd)

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        try:
            os.fsync(segment.fd)
        except OSError:
            logger.exception("event log fsync at close failed for %s", segment.path)
        finally:
            os.close(segment.fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
