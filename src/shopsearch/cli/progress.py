"""How long commands show progress: bars on a terminal, log lines anywhere else.

Library code reports through plain callbacks (:mod:`shopsearch.progress`); the commands turn
them into output here. With stderr on a terminal a job draws a live bar. Redirected to a file
or a pipe (a log, CI, ``nohup``), a bar would show only once the job is over, so the job writes
lines instead (:class:`ProgressLines`): one when it starts, then at most one every
:data:`LINE_EVERY` seconds, and one when it ends, each with done/total, percent, elapsed time,
rate and time left. A command whose library code reports no counts (``eval``, ``bench``) runs
under :func:`heartbeat`, which off a terminal says what it is doing whenever it has been quiet
for :data:`HEARTBEAT_EVERY` seconds. ``index``, ``train``, ``simulate``, ``eval``, ``bench``
and ``demo`` all report this way.
"""

from __future__ import annotations

import contextlib
import datetime
import threading
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress

from shopsearch.progress import Progress, StepProgress

#: Seconds between two progress lines of one job when stderr is not a terminal.
LINE_EVERY = 10.0
#: Seconds without any line after which :func:`heartbeat` says the job is still running.
HEARTBEAT_EVERY = 30.0

console = Console(stderr=True)


class _Activity:
    """What the running command last said, and when it last wrote a line (for heartbeats)."""

    def __init__(self) -> None:
        self.said = ""
        self.last_line = time.monotonic()


_activity = _Activity()


def _duration(seconds: float) -> str:
    """``h:mm:ss``."""
    return str(datetime.timedelta(seconds=int(seconds)))


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 100 else f"{per_second:.1f}"


class ProgressLines:
    """A :data:`~shopsearch.progress.Progress` callback that writes log lines, not a bar.

    A line is written on the first report, on a report at least ``every`` seconds after the
    last line, and on the report that finishes the job (``done >= total``); a report that
    repeats the last line's counts writes nothing.

    Args:
        description: what the job does, e.g. ``"indexing dense"``.
        unit: what it counts, e.g. ``"products"`` (``""``: plain numbers).
        every: least seconds between two lines before the last.
        clock: monotonic seconds (tests pass a fake one).
        out: where lines go (default: the CLI's stderr console).
    """

    def __init__(
        self,
        description: str,
        unit: str = "",
        every: float = LINE_EVERY,
        clock: Callable[[], float] = time.monotonic,
        out: Console | None = None,
    ) -> None:
        self.description = description
        self.unit = f" {unit}" if unit else ""
        self.every = every
        self._clock = clock
        self._out = out or console
        self._start = clock()
        self._last_line: float | None = None
        self._last_counts: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` (``total <= 0``: not known yet)."""
        now = self._clock()
        finished = 0 < total <= done
        if (done, total) == self._last_counts:
            return
        if not finished and self._last_line is not None and now - self._last_line < self.every:
            return
        self._last_line = now
        self._last_counts = (done, total)
        self._out.print(self.line(done, total, now - self._start), markup=False,
                        highlight=False, soft_wrap=True)  # fmt: skip
        _activity.last_line = time.monotonic()

    def line(self, done: int, total: int, elapsed: float) -> str:
        """The line for ``done`` of ``total`` after ``elapsed`` seconds."""
        if total > 0:
            text = (
                f"{self.description}: {done:,}/{total:,}{self.unit} "
                f"({100 * done // total}%) in {_duration(elapsed)}"
            )
        else:
            text = f"{self.description}: {done:,}{self.unit} in {_duration(elapsed)}"
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            text += f", {_rate(rate)}{self.unit}/s"
            if 0 < done < total:
                text += f", about {_duration((total - done) / rate)} left"
        return text


def _columns() -> tuple[ProgressColumn, ...]:
    return (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


@contextlib.contextmanager
def progress_bar(description: str, unit: str = "") -> Iterator[Progress]:
    """A progress display on stderr; yields a callback taking ``(done, total)``.

    A bar on a terminal; elsewhere :class:`ProgressLines` (``unit`` names what is counted).
    """
    if not console.is_terminal:
        yield ProgressLines(description, unit)
        return
    with RichProgress(*_columns(), console=console) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextlib.contextmanager
def step_progress(unit: str = "") -> Iterator[StepProgress]:
    """:func:`progress_bar` for a job of named steps: one bar (or run of lines) per step.

    Yields a callback taking ``(step, done, total)``; a step's display starts with its first
    report.
    """
    if not console.is_terminal:
        lines: dict[str, ProgressLines] = {}

        def log(step: str, done: int, total: int) -> None:
            if step not in lines:
                lines[step] = ProgressLines(step, unit)
            lines[step](done, total)

        yield log
        return
    with RichProgress(*_columns(), console=console) as bar:
        tasks: dict[str, TaskID] = {}

        def update(step: str, done: int, total: int) -> None:
            if step not in tasks:
                tasks[step] = bar.add_task(step, total=total)
            bar.update(tasks[step], completed=done, total=total)

        yield update


def say(message: str) -> None:
    """Tell the user what a long job is doing (a dim line on stderr)."""
    _activity.said = message
    _activity.last_line = time.monotonic()
    console.print(f"[dim]{message}[/dim]", highlight=False)


@contextlib.contextmanager
def heartbeat(
    job: str, every: float = HEARTBEAT_EVERY, out: Console | None = None
) -> Iterator[None]:
    """Off a terminal, while the block runs: a line whenever nothing was written for ``every``
    seconds, naming ``job``, the time it has run and the last thing it said.

    On a terminal it does nothing (bars and messages show there as they happen).
    """
    target = out or console
    if target.is_terminal:
        yield
        return
    start = time.monotonic()
    _activity.said = ""
    _activity.last_line = start
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(max(0.0, _activity.last_line + every - time.monotonic())):
            now = time.monotonic()
            if now - _activity.last_line < every:
                continue
            doing = f"; last: {_activity.said}" if _activity.said else ""
            target.print(f"{job}: still running after {_duration(now - start)}{doing}",
                         markup=False, highlight=False, soft_wrap=True)  # fmt: skip
            _activity.last_line = now

    thread = threading.Thread(target=beat, name="shopsearch-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


__all__ = [
    "HEARTBEAT_EVERY",
    "LINE_EVERY",
    "ProgressLines",
    "console",
    "heartbeat",
    "progress_bar",
    "say",
    "step_progress",
]
