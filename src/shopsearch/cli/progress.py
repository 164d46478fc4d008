"""Rich progress bars for long jobs, as a plain callback that library code can take."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: ``advance(done, total)``: library code reports progress through this; ``None`` means silent.
ProgressCallback = Callable[[int, int], None]

console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(description: str) -> Iterator[ProgressCallback]:
    """A progress bar on stderr; yields a callback taking ``(done, total)``."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def say(message: str) -> None:
    """Tell the user what a long job is doing (a dim line on stderr)."""
    console.print(f"[dim]{message}[/dim]", highlight=False)
