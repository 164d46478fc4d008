"""``shopsearch explain domains -w W [--json]``: CDAN-W's per-domain feature importances."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.table import Table

from shopsearch.cli.app import app
from shopsearch.cli.progress import console

explain_app = typer.Typer(help="Explain trained models.", no_args_is_help=True)
app.add_typer(explain_app, name="explain")


@explain_app.command("domains")
def domains(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Per-domain feature-group importances (mean attention weights) of the current bundle's
    CDAN-W ranking model; each domain's weights sum to 1.

    Example: shopsearch train -w W --stage ranking --model cdan-w; shopsearch explain domains -w W
    """
    from shopsearch.store.workspace import Workspace
    from shopsearch.transfer.explain import domain_importances

    result = domain_importances(Workspace.open(workspace))
    if as_json:
        typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        return
    names = list(result)
    groups = list(next(iter(result.values()))) if result else []
    table = Table("feature group", *names, title="CDAN-W attention per domain")
    for group in groups:
        cells = []
        for name in names:
            weights = result[name]
            top = max(weights.values())
            value = weights[group]
            cells.append(f"[bold]{value:.3f}[/bold]" if value == top else f"{value:.3f}")
        table.add_row(group, *cells)
    console.print(table)
