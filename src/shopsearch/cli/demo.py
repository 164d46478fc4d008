"""``shopsearch demo``: build the demo workspace from the simulator, index it and serve it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console, heartbeat, say, step_progress
from shopsearch.cli.simulate import run_simulation
from shopsearch.cli.stats import print_stats
from shopsearch.config import load_settings
from shopsearch.store.workspace import Workspace

DEMO = {"domains": 3, "products": 2000, "users": 5000, "sessions": 20000, "seed": 7}


@app.command()
def demo(
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Demo workspace directory.")
    ] = Path("demo-workspace"),
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve it at the end (or build and exit).")
    ] = True,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65_535, help="TCP port to serve on.")] = 8000,
) -> None:
    """Build a simulated 3-market shop, its search index and its ranking model (once; reused
    when they exist), show its statistics and serve it at http://HOST:PORT.

    The bundle is the best measured configuration that builds in a few minutes (RESULTS.md):
    lexical + MiniLM dense sources fused with weights fitted on the held-out logged clicks,
    the DNN ranking model trained on the logs, and query understanding (spelling correction,
    MMAN intent, suggestions; query rewriting is left out: minutes to train for a small gain).
    """
    exists = (workspace / "workspace.json").exists() and Workspace.open(workspace).count("requests")
    if exists:
        console.print(f"using the demo workspace already built at {workspace}")
    else:
        run_simulation(workspace, **DEMO)
    ws = Workspace.open(workspace)
    with heartbeat("demo"):
        _index_once(ws)
        _rank_once(ws)
        _understand_once(ws)
    print_stats(ws, as_json=False)
    if serve:
        from shopsearch.serve.runner import serve_workspace

        console.print(f"serving the demo at http://{host}:{port}  (Ctrl-C stops)")
        serve_workspace(ws, host=host, port=port)


def _index_once(ws: Workspace) -> None:
    """Build the search bundle unless the workspace has one."""
    from shopsearch.store.bundles import CURRENT_FILE
    from shopsearch.training.index import build_index

    if (ws.root / "models" / CURRENT_FILE).exists():
        console.print("using the search index already built")
        return
    with step_progress("products") as advance:
        engine = build_index(ws, load_settings(ws.root), progress=advance, say=say)
    console.print(f"indexed {len(engine.products)} products into {engine.bundle}")


def _rank_once(ws: Workspace) -> None:
    """Train the ranking stage unless the current bundle has one."""
    from shopsearch.store.bundles import current_bundle
    from shopsearch.training.ranking import train_ranking_bundle

    if (current_bundle(ws) / "ranking").is_dir():
        console.print("using the ranking model already trained")
        return
    settings = load_settings(ws.root)

    def epoch(done: int, total: int, train_loss: float, valid_loss: float) -> None:
        say(f"ranking epoch {done}/{total}: validation loss {valid_loss:.4f}")

    say(f"training the {settings.ranking.model!r} ranking model on the logs")
    bundle = train_ranking_bundle(ws, settings.ranking, epoch, settings)
    console.print(f"trained ranking model {settings.ranking.model!r} into {bundle}")


#: The query components of the demo: each trains in about a minute or less.
DEMO_QUERY_COMPONENTS = ("spell", "intent", "suggest")


def _understand_once(ws: Workspace) -> None:
    """Train the query stage unless the current bundle has one."""
    from shopsearch.store.bundles import current_bundle
    from shopsearch.training.query import train_query_bundle

    if (current_bundle(ws) / "query").is_dir():
        console.print("using the query understanding already trained")
        return
    say(f"training query understanding ({', '.join(DEMO_QUERY_COMPONENTS)}) on the logs")
    bundle = train_query_bundle(ws, load_settings(ws.root), DEMO_QUERY_COMPONENTS, say)
    console.print(f"trained query understanding into {bundle}")
