"""``shopsearch bench SUITE --workspace W --report R.json``: speed benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console
from shopsearch.config import load_settings
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace

bench_app = typer.Typer(help="Speed benchmarks; each writes a JSON report.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

WorkspaceOption = Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")]
ReportOption = Annotated[Path, typer.Option(help="Where to write the JSON report.")]


def _say(message: str) -> None:
    console.print(f"[dim]{message}[/dim]", highlight=False)


def _write_report(
    report: Path,
    result: dict[str, Any],
    rows: Callable[[dict[str, Any]], Iterable[str]],
    *,
    ratios: bool,
) -> None:
    """Write ``result`` to ``report``, print its ``rows`` (and its ``ratios``), then the path."""
    write_json(report, result)
    for row in rows(result):
        console.print(row, highlight=False)
    if ratios:
        console.print(result["ratios"], highlight=False)
    console.print(f"report written to {report}")


@bench_app.command("retrieval")
def retrieval(
    workspace: WorkspaceOption,
    report: ReportOption,
    queries: Annotated[int, typer.Option(help="Queries timed per system.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed for sampling queries.")] = 0,
) -> None:
    """Indexing products/s and one-at-a-time queries/s, p50/p99, beside raw tantivy and bm25s."""
    from shopsearch.bench.retrieval import run_retrieval_bench

    ws = Workspace.open(workspace)
    result = run_retrieval_bench(ws, load_settings(workspace), queries, seed, say=_say)
    _write_report(report, result, _retrieval_rows, ratios=True)


def _retrieval_rows(result: dict[str, Any]) -> Iterable[str]:
    for name, row in result["systems"].items():
        yield (
            f"{name:32} {row['qps']:9.1f} q/s  p50 {row['p50_ms']:7.2f} ms  "
            f"p99 {row['p99_ms']:7.2f} ms  index {row['index_per_s']:9.0f} products/s"
        )


@bench_app.command("serve")
def serve(
    workspace: WorkspaceOption,
    report: ReportOption,
    requests: Annotated[int, typer.Option(help="Most requests per concurrency level.")] = 2000,
    seconds: Annotated[float, typer.Option(help="Most seconds per concurrency level.")] = 20.0,
    concurrency: Annotated[
        str, typer.Option(help="Concurrent clients of each level, a comma list.")
    ] = "1,8,32",
    workers: Annotated[
        str, typer.Option(help="Server worker processes; a comma list (1,2) measures each.")
    ] = "1",
    seed: Annotated[int, typer.Option(help="Seed for sampling queries.")] = 0,
) -> None:
    """Requests/s and p50/p95/p99 of 'shopsearch serve' at each concurrency, beside Engine.search.

    The server runs on 127.0.0.1 as a subprocess; the load generator runs in this process.
    """
    from shopsearch.bench.serve import LoadBounds, parse_levels, run_serve_bench

    ws = Workspace.open(workspace)
    result = run_serve_bench(
        ws,
        load_settings(workspace),
        LoadBounds(requests, seconds),
        parse_levels(concurrency, "concurrency"),
        parse_levels(workers, "workers"),
        seed,
        say=_say,
    )
    _write_report(report, result, _serve_rows, ratios=True)


def _serve_rows(result: dict[str, Any]) -> Iterable[str]:
    engine = result["engine"]
    yield (
        f"Engine.search in process: {engine['qps']:.1f} q/s, p50 {engine['p50_ms']:.2f} ms, "
        f"p99 {engine['p99_ms']:.2f} ms"
    )


@bench_app.command("ranking")
def ranking(
    workspace: WorkspaceOption,
    report: ReportOption,
    requests: Annotated[int, typer.Option(help="Requests timed per model.")] = 500,
    candidates: Annotated[int, typer.Option(help="Candidates scored per request.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed for sampling candidates.")] = 0,
) -> None:
    """Ranking-model inference per request (features precomputed), p50/p99, every model."""
    from shopsearch.bench.ranking import run_ranking_bench

    ws = Workspace.open(workspace)
    result = run_ranking_bench(ws, requests, candidates, seed, say=_say)
    _write_report(report, result, _ranking_rows, ratios=False)


def _ranking_rows(result: dict[str, Any]) -> Iterable[str]:
    for name, row in result["systems"].items():
        yield (
            f"{name:14} p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
            f"{'ok' if row['within_target'] else 'over'} (target {result['target_ms']} ms)"
        )
