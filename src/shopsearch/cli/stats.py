"""``shopsearch stats --workspace DIR [--json]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from shopsearch.cli.app import app
from shopsearch.cli.progress import console
from shopsearch.events.stats import STAT_KEYS, workspace_stats
from shopsearch.store.workspace import Workspace


@app.command()
def stats(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Count products, users, requests, impressions, clicks, carts and purchases per domain.

    Searches and events logged by ``shopsearch serve`` are compacted into the tables first.
    """
    print_stats(Workspace.open(workspace), as_json)


def print_stats(workspace: Workspace, as_json: bool) -> None:
    """Print a workspace's per-domain counts as JSON or as a table."""
    result = workspace_stats(workspace)
    if as_json:
        typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    table = Table("domain", *STAT_KEYS, title=f"workspace {workspace.root}")
    for domain, counts in result["domains"].items():
        table.add_row(domain, *(f"{counts[k]:,}" for k in STAT_KEYS))
    console.print(table)
