"""``shopsearch bench serve``: requests/s and latency of ``shopsearch serve`` under load.

The server runs as a subprocess (``shopsearch serve``) on 127.0.0.1 and a free port, once per
``--workers`` value; the benchmark waits for ``/health``, checks one ``/search`` answer, sends a
few warm-up requests, then loads it at each concurrency level. Every level is bounded by a
request count and by seconds, every request by a timeout, and the server is always terminated
(:mod:`shopsearch.bench.server`). This module runs the levels and builds the report.

The load generator runs in this process on the same machine: raw asyncio HTTP/1.1 over one
keep-alive connection per simulated client, with requests encoded before timing and responses
read by ``Content-Length`` without parsing JSON, so the client spends little CPU per request
(:mod:`shopsearch.bench.http_client`).
Its CPU time is still reported per level (``client_cpu_share``: the share of one core it used),
because it competes with the server for the same cores.

Queries are the workspace's logged query texts drawn with their logged frequencies (see
:func:`shopsearch.bench.retrieval.bench_queries`), searched in all domains with ``size=10`` and
no explanation. They form one stream: the warm-up takes its first requests and every level
(server run) the next ``requests`` of it, never replaying earlier ones, so the server's
query-vector and result caches see what a server with that traffic would see. Each level
reports the query-vector cache's hits and misses in it and the lexical result cache's hit rate
(``query_cache``, read from ``/metrics``), the mean encoding batch size and the server's CPU
time (:mod:`shopsearch.bench.server_counters`). After the server stops, a fresh in-process
``Engine`` gets the same warm-up and then the first level's queries one at a time with the same
parameters, so ``http_overhead_ratio`` = (HTTP p50 at the first level, normally 1 client −
engine p50) / engine p50 is measured, not estimated.

Two kinds of levels:

- closed loop (``--concurrency``): N clients, each sending its next request as soon as the
  last is answered: the most the server completes. By Little's law the mean latency is
  N / throughput, so latency at high N measures the queue the clients themselves build
  (:mod:`shopsearch.bench.closed_loop`).
- open loop (``--rate``): requests arrive at a fixed rate (Poisson or evenly spaced) over up to
  ``--connections`` connections, and latency counts from each request's scheduled time
  (:mod:`shopsearch.bench.open_loop`): the latency shoppers arriving at that rate would see.
  ``--generator hey`` offers the same rates with ``hey``, a compiled load generator whose CPU
  is small and reported (:mod:`shopsearch.bench.hey_loop`; it sends a few distinct queries and
  times from the send, see there); ``--generator python,hey`` runs each rate with both on the
  same server (rows ``rate-R`` and ``hey-rate-R``).

Settings overrides (``--query-cache-size`` ...) reach the server as ``SHOPSEARCH_...``
environment variables and the in-process engine as settings.

The server logs every search it answers, as it does for real traffic, and that logging is part
of what is measured; but it serves a hard-linked snapshot of the workspace
(:func:`~shopsearch.bench.server.snapshot_workspace`), so benchmark searches never enter the
workspace's own logs.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from shopsearch.bench.closed_loop import LoadBounds, load_level
from shopsearch.bench.hey_loop import hey_binary, hey_level
from shopsearch.bench.http_client import HOST, REQUEST_TIMEOUT_S, request_bytes, search_paths
from shopsearch.bench.open_loop import Arrivals, open_level
from shopsearch.bench.retrieval import bench_queries
from shopsearch.bench.server import check_search, server_process, snapshot_workspace
from shopsearch.bench.server_counters import counted_level
from shopsearch.bench.timing import measure
from shopsearch.config import HttpServer, Settings
from shopsearch.errors import InvalidInputError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.progress import Say
from shopsearch.serve.threads import compute_threads_limited
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace

PAGE_SIZE = 10
#: Open-loop load generators (:attr:`OpenLoad.generators`).
GENERATORS = ("python", "hey")
WARMUP_REQUESTS = 20


def parse_levels(text: str, name: str) -> list[int]:
    """A comma list of positive integers (``"1,8,32"``), or a clear error naming the option."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise InvalidInputError(
            f"{name}={text!r} is not a comma list of positive integers; use e.g. 1,8,32"
        )
    return values


@dataclass(frozen=True)
class OpenLoad:
    """Open-loop levels: arrival rates (requests/s), arrival process, most connections, and
    the load generators offering them."""

    rates: Sequence[float] = ()
    arrivals: Arrivals = "poisson"
    connections: int = 32
    #: Who offers each rate, in order: ``"python"`` (this process, :mod:`.open_loop`) and/or
    #: ``"hey"`` (:mod:`.hey_loop`); with both, each rate runs twice on the same server.
    generators: Sequence[str] = ("python",)
    #: Distinct queries (one ``hey`` process each) of a ``hey`` level; ``None``: one per
    #: connection, so each process has one worker and arrivals are evenly spaced.
    hey_queries: int | None = None

    @property
    def hey_processes(self) -> int:
        """The ``hey`` processes (= distinct queries) of a ``hey`` level."""
        return self.hey_queries or self.connections


def _open_count(rate: float, bounds: LoadBounds) -> int:
    return max(1, min(bounds.requests, int(rate * bounds.seconds)))


def _serve_levels(
    workspace: Workspace,
    workers: int,
    stream: Sequence[str],
    concurrency: Sequence[int],
    open_load: OpenLoad,
    bounds: LoadBounds,
    env: Mapping[str, str],
    seed: int,
    say: Say,
    server: HttpServer | None,
) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(dir=workspace.dir("cache"), prefix="bench-serve-") as tmp:
        served = snapshot_workspace(workspace, Path(tmp) / "workspace")
        say(f"starting shopsearch serve with {workers} worker(s)")
        log = Path(tmp) / "server.log"
        with server_process(served, workers, log, env, server) as (port, pid):
            requests = request_bytes(port, search_paths(stream, PAGE_SIZE))
            check_search(port, search_paths(stream[:1], PAGE_SIZE)[0], log)
            warm = requests[:WARMUP_REQUESTS]
            load_level(port, warm, 1, LoadBounds(len(warm), bounds.seconds))
            offset = WARMUP_REQUESTS
            levels: dict[str, dict[str, Any]] = {}
            for clients in concurrency:
                part = requests[offset : offset + bounds.requests]
                offset += bounds.requests
                closed = partial(load_level, port, part, clients, bounds)
                row = counted_level(port, pid, "closed", closed)
                levels[str(clients)] = row
                say(
                    f"workers {workers}, {clients:3} clients (closed): {row['rps']:8.1f} req/s, "
                    f"p50 {_ms(row['p50_ms'])}, p99 {_ms(row['p99_ms'])}, "
                    f"{row['errors']} errors, cache hits {_share(row['query_cache']['hit_rate'])}"
                    f" (results {_share(row['query_cache']['result_hit_rate'])}, answers "
                    f"{_share(row['query_cache'].get('response_hit_rate'))})"
                    f", server cpu {_ms(row['server_cpu_ms_per_request'])}/request"
                    f", client cpu {row['client_cpu_share']:.0%}"
                )
            for rate in open_load.rates:
                count = _open_count(rate, bounds)
                part = requests[offset : offset + count]
                paths = search_paths(stream[offset : offset + count], PAGE_SIZE)
                offset += count
                for generator in open_load.generators:
                    row = _open_row(port, pid, generator, part, paths, rate, open_load, seed)
                    key = f"rate-{rate:g}" if generator == "python" else f"hey-rate-{rate:g}"
                    levels[key] = row
                    say(_open_line(workers, row, open_load))
    return levels


def _open_row(
    port: int,
    pid: int,
    generator: str,
    requests: Sequence[bytes],
    paths: Sequence[str],
    rate: float,
    open_load: OpenLoad,
    seed: int,
) -> dict[str, Any]:
    """One open-loop level at ``rate`` by ``generator``, with the server's counters.

    The Python generator sends ``requests`` (the level's part of the query stream); ``hey``
    sends the first :attr:`OpenLoad.hey_processes` distinct ``paths`` of it for as long as the
    Python generator would take (``len(requests) / rate`` seconds).
    """
    run: Callable[[], Mapping[str, Any]]
    if generator == "hey":
        seconds = len(requests) / rate
        run = partial(
            hey_level, port, paths, rate, open_load.connections, seconds, open_load.hey_processes
        )
    else:
        run = partial(
            open_level, port, requests, rate, open_load.connections, open_load.arrivals, seed
        )
    row = counted_level(port, pid, "open", run)
    row.setdefault("generator", "python")
    return row


def _open_line(workers: int, row: Mapping[str, Any], open_load: OpenLoad) -> str:
    how = (
        f"hey, {row['queries']} queries, {row['missing']} missing"
        if row["generator"] == "hey"
        else f"python, {open_load.arrivals}"
    )
    return (
        f"workers {workers}, {row['rate']:g} req/s offered (open, {how}): "
        f"{row['rps']:8.1f} req/s, p50 {_ms(row['p50_ms'])}, "
        f"p99 {_ms(row['p99_ms'])}, {row['errors']} errors, "
        f"cache hits {_share(row['query_cache']['hit_rate'])} "
        f"(results {_share(row['query_cache']['result_hit_rate'])}, answers "
        f"{_share(row['query_cache'].get('response_hit_rate'))}), "
        f"server cpu {_ms(row['server_cpu_ms_per_request'])}/request, "
        f"busiest worker {_share(row['worker_cpu']['busiest_utilisation'])} of a core, "
        f"client cpu {row['client_cpu_share']:.0%}"
    )


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _share(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0%}"


#: Settings the benchmark can override: option name → settings path.
OVERRIDES = {
    "query_cache_size": ("retrieval", "query_cache_size"),
    "result_cache_size": ("retrieval", "result_cache_size"),
    "response_cache_size": ("search", "response_cache_size"),
    "query_batch": ("retrieval", "query_batch"),
    "search_concurrency": ("serve", "search_concurrency"),
    "compute_threads": ("serve", "compute_threads"),
    "gil_switch_interval_us": ("serve", "gil_switch_interval_us"),
}


def with_overrides(
    settings: Settings, overrides: Mapping[str, int]
) -> tuple[Settings, dict[str, str]]:
    """``settings`` with ``overrides`` applied, and the server's environment for them."""
    env: dict[str, str] = {}
    for name, value in overrides.items():
        if name not in OVERRIDES:
            raise InvalidInputError(
                f"unknown override {name!r}; overridable settings are {', '.join(OVERRIDES)}"
            )
        section, key = OVERRIDES[name]
        part = getattr(settings, section).model_copy(update={key: value})
        settings = settings.model_copy(update={section: part})
        env[f"SHOPSEARCH_{section.upper()}__{key.upper()}"] = str(value)
    return settings, env


def _generator_overrides(
    open_load: OpenLoad, overrides: Mapping[str, int], say: Say
) -> dict[str, int]:
    """``overrides``, checked against the generators; under ``hey`` both caches default to off.

    ``hey`` repeats a few distinct queries (:mod:`shopsearch.bench.hey_loop`), so with the
    caches on nearly every request would be a cache hit; unless a cache size is given
    explicitly, runs with ``hey`` turn both caches off for every level (the Python levels of
    the same run included, so they stay comparable).
    """
    unknown = [g for g in open_load.generators if g not in GENERATORS]
    if unknown or not open_load.generators:
        raise InvalidInputError(
            f"generators {list(open_load.generators)} are not allowed; use one or both of "
            f"{', '.join(GENERATORS)}"
        )
    if open_load.hey_queries is not None and open_load.hey_queries < 1:
        raise InvalidInputError(
            f"hey_queries={open_load.hey_queries} is not allowed; use hey_queries >= 1"
        )
    chosen = dict(overrides)
    if "hey" in open_load.generators and open_load.rates:
        hey_binary()  # fail before starting a server when hey is missing
        caches = ("query_cache_size", "result_cache_size", "response_cache_size")
        off = [n for n in caches if n not in chosen]
        chosen.update(dict.fromkeys(off, 0))
        if off:
            say(f"hey repeats {open_load.hey_processes} queries: {', '.join(off)} set to 0")
    return chosen


def run_serve_bench(
    workspace: Workspace,
    settings: Settings,
    bounds: LoadBounds,
    concurrency: Sequence[int] = (1, 8, 32),
    workers: Sequence[int] = (1,),
    seed: int = 0,
    say: Say = print,
    open_load: OpenLoad = OpenLoad(),
    overrides: Mapping[str, int] | None = None,
    server: HttpServer | None = None,
) -> dict[str, Any]:
    """Load ``shopsearch serve`` at each level, then time ``Engine.search`` alone.

    Args:
        workspace: a workspace with a current bundle (``shopsearch index``).
        settings: the settings the in-process engine uses (the server reads the same sources).
        bounds: the most requests and seconds of each level.
        concurrency: concurrent clients of each closed-loop level (may be empty when
            ``open_load`` has rates).
        workers: server worker processes; the server is measured once per value. ``levels``
            holds the first value's levels, ``more_workers`` the others'.
        seed: seed for sampling the queries and the Poisson arrivals.
        say: progress messages.
        open_load: open-loop levels (arrival rates), run after the closed-loop ones.
        overrides: settings for this run (names in :data:`OVERRIDES`), for the server and the
            in-process engine alike.
        server: the HTTP server (``None``: ``settings.serve.server``).

    Returns:
        The report: ``suite``, ``dataset``, ``levels``, ``more_workers``, ``engine``,
        ``ratios``, ``config``.
    """
    if bounds.requests < 1 or bounds.seconds <= 0:
        raise InvalidInputError(
            f"requests={bounds.requests}, seconds={bounds.seconds} leave nothing to measure; "
            "use requests >= 1 and seconds > 0"
        )
    if not concurrency and not open_load.rates:
        raise InvalidInputError("no level to run; give --concurrency levels or --rate values")
    if open_load.connections < 1:
        raise InvalidInputError(
            f"connections={open_load.connections} is not allowed; use connections >= 1"
        )
    overrides = _generator_overrides(open_load, overrides or {}, say)
    settings, env = with_overrides(settings, overrides)
    current_bundle(workspace)  # fail before starting a server when there is nothing to serve
    products = workspace.table("products")
    total = (
        WARMUP_REQUESTS
        + len(concurrency) * bounds.requests
        + sum(_open_count(rate, bounds) for rate in open_load.rates)
    )
    stream = bench_queries(workspace, products, total, seed)
    by_workers = {
        w: _serve_levels(
            workspace, w, stream, concurrency, open_load, bounds, env, seed, say, server
        )
        for w in workers
    }
    levels = by_workers[workers[0]]
    # The first level's own queries, as many as it answered: the query cache warms along the
    # stream, so timing more (later, more often cached) queries would flatter the engine.
    answered = int(next(iter(levels.values()))["requests"]) if levels else bounds.requests
    say("timing Engine.search in process, one query at a time (same warm-up, first level)")
    with compute_threads_limited(settings.serve.compute_threads):  # as a server worker runs
        engine = Engine.load(workspace, settings)
        domain = engine.resolve_domain(None)  # the market the server searches without one
        first = stream[WARMUP_REQUESTS : WARMUP_REQUESTS + max(answered, 1)]
        for query in stream[:WARMUP_REQUESTS]:
            engine.search(SearchParams(query, domain, size=PAGE_SIZE))
        timed = measure(
            lambda q: engine.search(SearchParams(q, domain, size=PAGE_SIZE)), first, warmup=0
        )
    return {
        "suite": "bench/serve",
        "dataset": {
            "products": products.num_rows,
            "domains": len(workspace.domains()),
            "queries": len(stream),
            "distinct_queries": len(set(stream)),
            "sources": sorted(engine.retrieval.sources),
            "ranking": engine.ranking is not None,
        },
        "levels": levels,
        "more_workers": {str(w): by_workers[w] for w in workers[1:]},
        "engine": timed,
        "ratios": _ratios(levels, timed, by_workers),
        "config": {
            "seed": seed,
            "requests_per_level": bounds.requests,
            "seconds_per_level": bounds.seconds,
            "concurrency": list(concurrency),
            "rates": list(open_load.rates),
            "arrivals": open_load.arrivals,
            "connections": open_load.connections,
            "generators": list(open_load.generators),
            "hey_queries": open_load.hey_processes,
            "workers": list(workers),
            "server": server or settings.serve.server,
            "overrides": dict(overrides),
            "query_cache_size": settings.retrieval.query_cache_size,
            "result_cache_size": settings.retrieval.result_cache_size,
            "response_cache_size": settings.search.response_cache_size,
            "query_batch": settings.retrieval.query_batch,
            "search_concurrency": settings.serve.search_concurrency,
            # unset: on the loop exactly when the server has several workers
            "search_on_event_loop": settings.serve.search_on_event_loop,
            "share_answers": settings.serve.share_answers,  # with several workers
            "compute_threads": settings.serve.compute_threads,
            "size": PAGE_SIZE,
            "warmup_requests": WARMUP_REQUESTS,
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "client": "asyncio raw HTTP/1.1, keep-alive connections, same machine"
            + (
                " (open loop also: hey, one process per query)"
                if "hey" in open_load.generators
                else ""
            ),
            "cpu_count": os.cpu_count(),
            "host": HOST,
            "served": "a hard-linked snapshot of the workspace (its logs stay untouched)",
        },
    }


def _ratios(
    levels: dict[str, dict[str, Any]],
    engine: dict[str, float],
    by_workers: dict[int, dict[str, dict[str, Any]]],
) -> dict[str, float | None]:
    closed = {k: v for k, v in levels.items() if v.get("mode") == "closed"}
    if not closed:
        return {"engine_p50_ms": engine["p50_ms"]}
    first = next(iter(closed.values()))
    last = closed[max(closed, key=int)]
    http_p50 = first["p50_ms"]
    ratios: dict[str, float | None] = {
        "http_p50_ms_at_lowest_concurrency": None if http_p50 is None else float(http_p50),
        "engine_p50_ms": engine["p50_ms"],
        "http_overhead_ratio": (
            None if http_p50 is None else (http_p50 - engine["p50_ms"]) / engine["p50_ms"]
        ),
        "rps_highest_over_lowest_concurrency": (
            float(last["rps"] or 0) / float(first["rps"]) if first["rps"] else None
        ),
    }
    base = next(iter(by_workers))
    top = max(closed, key=int)
    for w, other in list(by_workers.items())[1:]:
        base_rps = by_workers[base][top]["rps"]
        ratios[f"rps_workers_{w}_over_{base}_at_{top}"] = (
            float(other[top]["rps"] or 0) / float(base_rps) if base_rps else None
        )
    return ratios
