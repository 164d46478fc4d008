"""The typer application every command module attaches its commands to."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="shopsearch",
    help="A learning e-commerce search engine: ingest, simulate, train, search, evaluate, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
