"""``shopsearch bench stages``: where a search's time goes, per stage, in process and over HTTP.

Every search records the milliseconds of each pipeline stage and sub-stage in its
``timings_ms`` (``query``, ``retrieve``, ``retrieve.lexical``, ``rank``, ``render``, ``total``
...). This benchmark runs the same logged queries (drawn with their logged frequencies, see
:func:`shopsearch.bench.retrieval.bench_queries`) one at a time

- in process, through ``Engine.search`` with the server's compute-thread limit, timing each
  call's wall and CPU time (``time.process_time``: every thread of this process), and
- over HTTP, against ``shopsearch serve`` (one worker, a snapshot of the workspace), one
  request at a time on a fresh connection each (:func:`shopsearch.bench.http_client.get`),
  reading each answer's ``timings_ms`` and timing the round trip; the server's CPU per request
  comes from ``/proc`` (:mod:`shopsearch.bench.server_counters`),

and reports each timing key's mean, p50 and p99 in both places. The query-vector and result
caches are off by default (``caches=False``), so every search does a stage's full work.
"""

from __future__ import annotations

import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from shopsearch.bench.http_client import get, search_paths
from shopsearch.bench.retrieval import bench_queries
from shopsearch.bench.serve import with_overrides
from shopsearch.bench.server import check_search, server_process, snapshot_workspace
from shopsearch.bench.server_counters import server_cpu_seconds
from shopsearch.config import HttpServer, Settings
from shopsearch.errors import InvalidInputError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.progress import Say
from shopsearch.serve.threads import compute_threads_limited
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace

PAGE_SIZE = 10
WARMUP = 20


def summarise(samples: Mapping[str, Sequence[float]]) -> dict[str, dict[str, float]]:
    """Each key's ``mean_ms``, ``p50_ms``, ``p99_ms`` and ``count`` (samples in ms)."""
    out: dict[str, dict[str, float]] = {}
    for key, values in samples.items():
        ms = np.asarray(values, np.float64)
        out[key] = {
            "mean_ms": float(ms.mean()),
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "count": float(ms.size),
        }
    return out


def _collect(into: dict[str, list[float]], timings: Mapping[str, float]) -> None:
    for key, ms in timings.items():
        into[key].append(float(ms))


def _settings_env(
    settings: Settings, caches: bool, ranking: bool
) -> tuple[Settings, dict[str, str]]:
    """``settings`` with the caches and the ranking stage as asked, and the server's env."""
    off = dict.fromkeys(("query_cache_size", "result_cache_size", "response_cache_size"), 0)
    settings, env = with_overrides(settings, {} if caches else off)
    if not ranking:
        rank = settings.ranking.model_copy(update={"enabled": False})
        settings = settings.model_copy(update={"ranking": rank})
        env["SHOPSEARCH_RANKING__ENABLED"] = "false"
    return settings, env


def _in_process(
    workspace: Workspace, settings: Settings, queries: Sequence[str]
) -> tuple[dict[str, Any], bool, list[str]]:
    samples: dict[str, list[float]] = defaultdict(list)
    with compute_threads_limited(settings.serve.compute_threads):
        engine = Engine.load(workspace, settings)
        domain = engine.resolve_domain(None)  # the market the server searches without one
        for query in queries[:WARMUP]:
            engine.search(SearchParams(query, domain, size=PAGE_SIZE))
        for query in queries[WARMUP:]:
            wall, cpu = time.perf_counter(), time.process_time()
            response = engine.search(SearchParams(query, domain, size=PAGE_SIZE))
            samples["call_wall"].append(1000 * (time.perf_counter() - wall))
            samples["call_cpu"].append(1000 * (time.process_time() - cpu))
            _collect(samples, response.timings_ms)
    return summarise(samples), engine.ranking is not None, sorted(engine.retrieval.sources)


def _over_http(
    workspace: Workspace,
    queries: Sequence[str],
    env: Mapping[str, str],
    server: HttpServer | None,
) -> dict[str, Any]:
    samples: dict[str, list[float]] = defaultdict(list)
    paths = search_paths(queries, PAGE_SIZE)
    with tempfile.TemporaryDirectory(dir=workspace.dir("cache"), prefix="bench-stages-") as tmp:
        served = snapshot_workspace(workspace, Path(tmp) / "workspace")
        log = Path(tmp) / "server.log"
        with server_process(served, 1, log, env, server) as (port, pid):
            check_search(port, paths[0], log)
            for path in paths[:WARMUP]:
                get(port, path)
            cpu = server_cpu_seconds(pid)
            for path in paths[WARMUP:]:
                start = time.perf_counter()
                status, body = get(port, path)
                samples["round_trip"].append(1000 * (time.perf_counter() - start))
                if status == 200:
                    _collect(samples, orjson.loads(body)["timings_ms"])
            after = server_cpu_seconds(pid)
    summary = summarise(samples)
    answered = len(samples.get("total", ()))
    if cpu is not None and after is not None and answered:
        summary["server_cpu"] = {"mean_ms": 1000 * (after - cpu) / answered}
    return summary


def run_stages_bench(
    workspace: Workspace,
    settings: Settings,
    queries: int = 300,
    seed: int = 0,
    caches: bool = False,
    ranking: bool = True,
    http: bool = True,
    say: Say = print,
    server: HttpServer | None = None,
) -> dict[str, Any]:
    """Per-stage timings of ``queries`` logged queries, in process and (``http``) over HTTP.

    Args:
        workspace: a workspace with a current bundle.
        settings: the workspace's settings (caches and ranking are set from the next args).
        queries: queries timed (after :data:`WARMUP` more).
        seed: seed for drawing the logged queries.
        caches: keep the query-vector and result caches on.
        ranking: keep the ranking stage (when the bundle has one).
        http: also measure over HTTP.
        say: progress messages.
        server: the HTTP server (``None``: ``settings.serve.server``).

    Returns:
        ``suite``, ``dataset``, ``in_process`` and ``http`` (timing key → ``mean_ms``,
        ``p50_ms``, ``p99_ms``, ``count``), ``config``.
    """
    if queries < 1:
        raise InvalidInputError(f"queries={queries} leaves nothing to measure; use >= 1")
    bundle = current_bundle(workspace)
    settings, env = _settings_env(settings, caches, ranking)
    products = workspace.table("products")
    stream = bench_queries(workspace, products, WARMUP + queries, seed)
    say(f"in process: {queries} queries, one at a time")
    in_process, ranked, sources = _in_process(workspace, settings, stream)
    over_http: dict[str, Any] = {}
    if http:
        say(f"over HTTP: {queries} queries, one at a time, one server worker")
        over_http = _over_http(workspace, stream, env, server)
    return {
        "suite": "bench/stages",
        "dataset": {
            "products": products.num_rows,
            "bundle": bundle.name,
            "sources": sources,
            "ranking": ranked,
            "queries": queries,
            "distinct_queries": len(set(stream[WARMUP:])),
        },
        "in_process": in_process,
        "http": over_http,
        "config": {
            "seed": seed,
            "caches": caches,
            "ranking_enabled": ranking,
            "warmup": WARMUP,
            "size": PAGE_SIZE,
            "compute_threads": settings.serve.compute_threads,
            "server": server or settings.serve.server,
            "stages": list(settings.pipeline.stages),
        },
    }
