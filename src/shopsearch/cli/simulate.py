"""``shopsearch simulate``: build a simulated multi-market shop in a workspace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console, heartbeat, progress_bar
from shopsearch.errors import InvalidInputError
from shopsearch.store.workspace import Workspace


def run_simulation(
    workspace: Path, domains: int, products: int, users: int, sessions: int, seed: int
) -> None:
    """Simulate into ``workspace`` with a progress bar and print the summary."""
    from shopsearch.simulate import SimulationConfig, simulate

    ws = Workspace.create(workspace)
    if ws.count("requests"):
        raise InvalidInputError(
            f"workspace {workspace} already holds {ws.count('requests')} logged requests; "
            "simulate into a new directory so nothing stored is mixed with simulated logs"
        )
    config = SimulationConfig(
        domains=domains, products=products, users=users, sessions=sessions, seed=seed
    )
    with heartbeat("simulate"), progress_bar("simulating sessions", "sessions") as advance:
        summary = simulate(ws, config, progress=advance)
    console.print(summary.describe(), highlight=False)


@app.command()
def simulate(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="New workspace directory.")],
    domains: Annotated[int, typer.Option(help="Number of markets (storefronts).")] = 3,
    products: Annotated[int, typer.Option(help="Products in the global catalog.")] = 2000,
    users: Annotated[int, typer.Option(help="Users over all markets.")] = 5000,
    sessions: Annotated[int, typer.Option(help="Search sessions to simulate.")] = 20000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same shop and logs).")] = 7,
) -> None:
    """Simulate a multi-market shop: catalog, users, search sessions and their logs.

    Ground truth (true relevance and purchase propensity) goes to WORKSPACE/ground_truth/,
    apart from the logs, for evaluation only.
    """
    run_simulation(workspace, domains, products, users, sessions, seed)
