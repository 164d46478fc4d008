"""``shopsearch bench SUITE --workspace W --report R.json``: speed benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any

import typer

from shopsearch.cli.app import app
from shopsearch.cli.progress import console, heartbeat, say
from shopsearch.cli.serve import ServerOption
from shopsearch.config import load_settings
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace

bench_app = typer.Typer(help="Speed benchmarks; each writes a JSON report.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

WorkspaceOption = Annotated[Path, typer.Option("--workspace", "-w", help="Workspace directory.")]
ReportOption = Annotated[Path, typer.Option(help="Where to write the JSON report.")]


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
    with heartbeat("bench retrieval"):
        result = run_retrieval_bench(ws, load_settings(workspace), queries, seed, say=say)
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
    requests: Annotated[int, typer.Option(help="Most requests per level.")] = 2000,
    seconds: Annotated[float, typer.Option(help="Most seconds per level.")] = 20.0,
    concurrency: Annotated[
        str,
        typer.Option(help="Closed-loop levels: concurrent clients, a comma list ('' for none)."),
    ] = "1,8,32",
    rate: Annotated[
        str,
        typer.Option(
            help="Open-loop levels: arrival rates in requests/s, a comma list (e.g. 100,300); "
            "latency counts from each request's scheduled time."
        ),
    ] = "",
    arrivals: Annotated[
        str, typer.Option(help="Open-loop arrivals: poisson or uniform.")
    ] = "poisson",
    connections: Annotated[
        int, typer.Option(min=1, help="Open-loop connections (most requests in flight).")
    ] = 32,
    generator: Annotated[
        str,
        typer.Option(
            help="Open-loop load generator: python (in this process), hey (compiled; "
            "apt-get install hey; caches off unless sized explicitly) or python,hey (each "
            "rate with both, same server)."
        ),
    ] = "python",
    hey_queries: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Distinct logged queries of a hey level, one hey process each (default: one "
            "per connection, so arrivals are evenly spaced).",
        ),
    ] = None,
    workers: Annotated[
        str, typer.Option(help="Server worker processes; a comma list (1,2) measures each.")
    ] = "1",
    query_cache_size: Annotated[
        int | None,
        typer.Option(min=0, help="Override retrieval.query_cache_size (0: cache off)."),
    ] = None,
    result_cache_size: Annotated[
        int | None,
        typer.Option(min=0, help="Override retrieval.result_cache_size (0: cache off)."),
    ] = None,
    response_cache_size: Annotated[
        int | None,
        typer.Option(min=0, help="Override search.response_cache_size (0: cache off)."),
    ] = None,
    query_batch: Annotated[
        int | None, typer.Option(min=1, help="Override retrieval.query_batch (1: no batching).")
    ] = None,
    search_concurrency: Annotated[
        int | None, typer.Option(min=1, help="Override serve.search_concurrency.")
    ] = None,
    compute_threads: Annotated[
        int | None,
        typer.Option(min=0, help="Override serve.compute_threads (0: library defaults)."),
    ] = None,
    gil_switch_interval_us: Annotated[
        int | None,
        typer.Option(min=50, help="Override serve.gil_switch_interval_us (Python's: 5000)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling queries and arrivals.")] = 0,
    server: ServerOption = None,
) -> None:
    """Requests/s and p50/p95/p99 of 'shopsearch serve': closed-loop clients and open-loop
    arrival rates, beside Engine.search in process.

    The server runs on 127.0.0.1 as a subprocess; the load generator runs in this process
    (--generator python) or as hey processes (--generator hey).
    """
    from shopsearch.bench.closed_loop import LoadBounds
    from shopsearch.bench.serve import OpenLoad, parse_levels, run_serve_bench
    from shopsearch.errors import InvalidInputError

    if arrivals not in ("poisson", "uniform"):
        raise InvalidInputError(f"--arrivals {arrivals!r} is not one of poisson, uniform")
    overrides = {
        name: value
        for name, value in (
            ("query_cache_size", query_cache_size),
            ("result_cache_size", result_cache_size),
            ("response_cache_size", response_cache_size),
            ("query_batch", query_batch),
            ("search_concurrency", search_concurrency),
            ("compute_threads", compute_threads),
            ("gil_switch_interval_us", gil_switch_interval_us),
        )
        if value is not None
    }
    ws = Workspace.open(workspace)
    with heartbeat("bench serve"):
        result = run_serve_bench(
            ws,
            load_settings(workspace),
            LoadBounds(requests, seconds),
            parse_levels(concurrency, "concurrency") if concurrency.strip() else [],
            parse_levels(workers, "workers"),
            seed,
            say=say,
            open_load=OpenLoad(
                _rates(rate),
                "poisson" if arrivals == "poisson" else "uniform",
                connections,
                [part.strip() for part in generator.split(",") if part.strip()],
                hey_queries,
            ),
            overrides=overrides,
            server=None if server is None else server.value,
        )
    _write_report(report, result, _serve_rows, ratios=True)


def _rates(text: str) -> list[float]:
    from shopsearch.errors import InvalidInputError

    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = [-1.0]
    if any(not v > 0 for v in values):
        raise InvalidInputError(
            f"--rate {text!r} is not a comma list of positive request rates; use e.g. 100,300"
        )
    return values


def _serve_rows(result: dict[str, Any]) -> Iterable[str]:
    engine = result["engine"]
    yield (
        f"Engine.search in process: {engine['qps']:.1f} q/s, p50 {engine['p50_ms']:.2f} ms, "
        f"p99 {engine['p99_ms']:.2f} ms"
    )


@bench_app.command("stages")
def stages(
    workspace: WorkspaceOption,
    report: ReportOption,
    queries: Annotated[int, typer.Option(min=1, help="Logged queries timed.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed for drawing logged queries.")] = 0,
    caches: Annotated[
        bool, typer.Option(help="Keep the query-vector and result caches on.")
    ] = False,
    ranking: Annotated[bool, typer.Option(help="Keep the ranking stage (if bundled).")] = True,
    http: Annotated[bool, typer.Option(help="Also measure over HTTP (one worker).")] = True,
    server: ServerOption = None,
) -> None:
    """Per-stage milliseconds (each search's timings_ms: mean, p50, p99) of logged queries,
    one at a time, in process and over HTTP, with CPU per search."""
    from shopsearch.bench.stages import run_stages_bench

    with heartbeat("bench stages"):
        result = run_stages_bench(
            Workspace.open(workspace),
            load_settings(workspace),
            queries,
            seed,
            caches=caches,
            ranking=ranking,
            http=http,
            say=say,
            server=None if server is None else server.value,
        )
    _write_report(report, result, _stages_rows, ratios=False)


def _stages_rows(result: dict[str, Any]) -> Iterable[str]:
    inside, http = result["in_process"], result["http"]
    yield f"{'timing':24} {'in process mean/p50/p99 ms':>28} {'HTTP mean/p50/p99 ms':>28}"
    for key in [*inside, *(k for k in http if k not in inside)]:
        cells = [
            " ".join(
                f"{row[k]:8.2f}" if k in row else f"{'-':>8}"
                for k in ("mean_ms", "p50_ms", "p99_ms")
            )
            if row
            else f"{'-':>26}"
            for row in (inside.get(key), http.get(key))
        ]
        yield f"{key:24} {cells[0]:>28} {cells[1]:>28}"


@bench_app.command("ranking")
def ranking(
    workspace: WorkspaceOption,
    report: ReportOption,
    requests: Annotated[int, typer.Option(help="Requests timed per model.")] = 500,
    candidates: Annotated[int, typer.Option(help="Candidates scored per request.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed for sampling candidates.")] = 0,
) -> None:
    """Ranking per request, p50/p99, every model: the model alone (features precomputed) and the
    whole ranking stage (serving features + model)."""
    from shopsearch.bench.ranking import run_ranking_bench

    ws = Workspace.open(workspace)
    with heartbeat("bench ranking"):
        result = run_ranking_bench(ws, requests, candidates, seed, say=say)
    _write_report(report, result, _ranking_rows, ratios=False)


def _ranking_rows(result: dict[str, Any]) -> Iterable[str]:
    for name, row in result["systems"].items():
        yield (
            f"model {name:14} p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
            f"(cpu p99 {row.get('cpu_p99_ms', float('nan')):5.2f} ms)  "
            f"{'ok' if row['within_target'] else 'over'} (target {result['target_ms']} ms)"
        )
    for name, row in result.get("stage", {}).items():
        yield (
            f"stage {name:14} p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
            f"(cpu p99 {row['cpu_p99_ms']:5.2f} ms)  "
            f"{'ok' if row['within_target'] else 'over'} (target {result['stage_target_ms']} ms, "
            f"features + model{' + dense_sim' if result.get('dense_sim') else ''})"
        )


@bench_app.command("prerank")
def prerank(
    workspace: WorkspaceOption,
    report: ReportOption,
    requests: Annotated[int, typer.Option(help="Requests timed.")] = 500,
    candidates: Annotated[int, typer.Option(help="Candidates pre-ranked per request.")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed for picking logged queries.")] = 0,
    config: Annotated[Path | None, typer.Option("--config", help="TOML settings file.")] = None,
) -> None:
    """The pre-ranking stage per request on one thread, p50/p99 (wall and CPU), for the
    current bundle's model scoring CANDIDATES products (target: p99 <= 2 ms for 2,000)."""
    from shopsearch.bench.prerank import run_prerank_bench

    settings = load_settings(workspace, config)
    with heartbeat("bench prerank"):
        result = run_prerank_bench(
            Workspace.open(workspace), settings, requests, candidates, seed, say=say
        )
    _write_report(report, result, _prerank_rows, ratios=False)


def _prerank_rows(result: dict[str, Any]) -> Iterable[str]:
    yield (
        f"prerank {result['objective']} over {result['candidates']} candidates: "
        f"p50 {result['p50_ms']:.2f} ms  p99 {result['p99_ms']:.2f} ms  "
        f"(cpu p99 {result['cpu_p99_ms']:.2f} ms)  "
        f"{'ok' if result['within_target'] else 'over'} (target {result['target_ms']} ms)"
    )
