"""``shopsearch ingest FORMAT PATH... --workspace DIR``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console
from shopsearch.datasets import LOADERS, get_loader
from shopsearch.errors import RejectedRowsError
from shopsearch.ingest.workspace import ingest as ingest_data
from shopsearch.store.workspace import Workspace

WorkspaceOption = Annotated[
    Path, typer.Option("--workspace", "-w", help="Workspace directory (created if missing).")
]


@app.command()
def ingest(
    format: Annotated[str, typer.Argument(help="Data format: " + ", ".join(LOADERS.names()))],
    paths: Annotated[list[Path], typer.Argument(help="Input file(s) of that format.")],
    workspace: WorkspaceOption,
    add_domains: Annotated[
        bool,
        typer.Option(help="Register domains that rows name but no domains file declares."),
    ] = False,
) -> None:
    """Load data of a public or generic format into a workspace.

    Every row is validated: good rows are stored (products upserted by domain and id, events
    appended), bad rows go to a rejects report (file, row, field, reason) under
    WORKSPACE/rejects/, and the command exits with status 1 when any row was rejected.
    """
    loader = get_loader(format)
    with console.status(f"reading {format} from {len(paths)} file(s)"):
        data = loader(paths)
    ws = Workspace.create(workspace)
    with console.status("validating and storing"):
        result = ingest_data(ws, data, add_domains=add_domains)
    for note in data.notes:
        console.print(f"[dim]note:[/dim] {note}", highlight=False)
    if result.added_domains:
        console.print(f"added domains: {', '.join(result.added_domains)}")
    kept = ", ".join(f"{n} {table}" for table, n in result.kept.items())
    console.print(f"stored {kept or 'nothing'} in {ws.root}", highlight=False)
    if result.rejected:
        assert result.report is not None
        kept_rows = sum(result.kept.values())
        raise RejectedRowsError(result.rejected, kept_rows, result.report)
