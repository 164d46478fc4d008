"""``shopsearch demo``: build the demo workspace from the simulator and show it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console
from shopsearch.cli.simulate import run_simulation
from shopsearch.cli.stats import print_stats
from shopsearch.store.workspace import Workspace

DEMO = {"domains": 3, "products": 2000, "users": 5000, "sessions": 20000, "seed": 7}


@app.command()
def demo(
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Demo workspace directory.")
    ] = Path("demo-workspace"),
) -> None:
    """Build a simulated 3-market shop (once; reused when it exists) and show its statistics."""
    exists = (workspace / "workspace.json").exists() and Workspace.open(workspace).count(
        "requests"
    )
    if exists:
        console.print(f"using the demo workspace already built at {workspace}")
    else:
        run_simulation(workspace, **DEMO)
    print_stats(Workspace.open(workspace), as_json=False)
