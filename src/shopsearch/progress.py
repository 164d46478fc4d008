"""How long jobs report progress, as plain callables (the CLI turns them into bars and lines).

* :data:`Say` — a message for the user (``say("training dnn")``);
* :data:`Progress` — ``progress(done, total)`` as one job advances;
* :data:`StepProgress` — ``progress(step, done, total)`` for a job of named steps.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``say(message)``: tells the user what a long job is doing.
Say = Callable[[str], None]
#: ``progress(done, total)``: called as a job advances.
Progress = Callable[[int, int], None]
#: ``progress(step, done, total)``: called as each named step of a job advances.
StepProgress = Callable[[str, int, int], None]


def silent(_message: str) -> None:
    """A :data:`Say` that says nothing."""


__all__ = ["Progress", "Say", "StepProgress", "silent"]
