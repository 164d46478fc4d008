"""``shopsearch bench SUITE --workspace W --report R.json``: speed benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console
from shopsearch.config import load_settings
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace

bench_app = typer.Typer(help="Speed benchmarks; each writes a JSON report.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


def _say(message: str) -> None:
    console.print(f"[dim]{message}[/dim]", highlight=False)


@bench_app.command("retrieval")
def retrieval(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")],
    report: Annotated[Path, typer.Option(help="Where to write the JSON report.")],
    queries: Annotated[int, typer.Option(help="Queries timed per system.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed for sampling queries.")] = 0,
) -> None:
    """Indexing products/s and one-at-a-time queries/s, p50/p99, beside raw tantivy and bm25s."""
    from shopsearch.bench.retrieval import run_retrieval_bench

    ws = Workspace.open(workspace)
    result = run_retrieval_bench(ws, load_settings(workspace), queries, seed, say=_say)
    write_json(report, result)
    for name, row in result["systems"].items():
        console.print(
            f"{name:32} {row['qps']:9.1f} q/s  p50 {row['p50_ms']:7.2f} ms  "
            f"p99 {row['p99_ms']:7.2f} ms  index {row['index_per_s']:9.0f} products/s",
            highlight=False,
        )
    console.print(result["ratios"], highlight=False)
    console.print(f"report written to {report}")
