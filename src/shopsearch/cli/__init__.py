"""The ``shopsearch`` command line. Each command module attaches its commands to :data:`app`."""

from __future__ import annotations

import sys

import click
import typer

from shopsearch.cli.app import app
from shopsearch.errors import RejectedRowsError, ShopSearchError


def _register() -> None:
    # Importing a command module attaches its commands to ``app``.
    from shopsearch.cli import (  # noqa: F401
        bench,
        demo,
        evaluate,
        explain,
        ingest,
        search,
        serve,
        simulate,
        split,
        stats,
        train,
    )


def run(argv: list[str]) -> int:
    """:func:`main` in process (tests, notebooks): the exit status instead of ``SystemExit``."""
    try:
        main(argv)
    except SystemExit as exc:
        return 0 if exc.code is None else int(exc.code)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI; a user mistake prints one clear line, never a traceback.

    Exit status: 0 success, 1 rows rejected by ingest, 2 any other user error.
    """
    _register()
    from rich.markup import escape

    from shopsearch.cli.progress import console

    try:
        app(args=argv, standalone_mode=False)
    except RejectedRowsError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except ShopSearchError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (click.exceptions.Abort, typer.Abort):
        console.print("aborted")
        sys.exit(130)
    except (click.exceptions.ClickException, typer.TyperException) as exc:
        # typer raises its own (vendored) click exceptions; both know how to show themselves.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(int(getattr(exc, "exit_code", 2)))
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] file not found: {exc.filename}", highlight=False)
        sys.exit(2)


__all__ = ["app", "main", "run"]
