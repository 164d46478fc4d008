"""Prometheus metrics: requests, errors and latency per route, latency per search stage, the
dense sources' query-vector cache (hits, misses, evictions) and encoding batch sizes, and the
event log's writes, drops and compactions.

With one process the metrics live in a registry of their own (several apps in one process, as
in tests, do not collide). With several workers, ``shopsearch serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start; every worker then writes its values
there and ``GET /metrics`` on any worker reports the sum over all of them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopsearch.serve.heap import CollectorPauses

if TYPE_CHECKING:
    from shopsearch.pipeline.engine import Engine

#: The exposition format's content type.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH = (1, 2, 4, 8, 16, 32, 64)


class Metrics:
    """The server's metrics (also the event log's observer)."""

    def __init__(self) -> None:
        # the *_created series only repeat the process start time
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "shopsearch_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "shopsearch_http_errors",
            "HTTP error answers by route template and kind (client: 4xx, server: 5xx).",
            ["route", "kind"],
            registry=registry,
        )
        self.latency = Histogram(
            "shopsearch_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["route"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.stages = Histogram(
            "shopsearch_search_stage_duration_seconds",
            "Time spent in each search stage (the timings_ms keys of /search).",
            ["stage"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.gc_pauses = Histogram(
            "shopsearch_gc_pause_seconds",
            "Stops of the cyclic garbage collector (every thread waits), by generation.",
            ["generation"],
            buckets=_SECONDS,
            registry=registry,
        )
        #: Records the collector's pauses (started and stopped by the app's lifespan); they
        #: reach ``gc_pauses`` with each answered request and each scrape.
        self.collections = CollectorPauses()
        self.written_lines = Counter(
            "shopsearch_event_log_lines",
            "Lines written and fsync'd to the event log.",
            registry=registry,
        )
        self.write_seconds = Histogram(
            "shopsearch_event_log_write_duration_seconds",
            "Time of one event log write + fsync (one group commit).",
            buckets=_SECONDS,
            registry=registry,
        )
        self.dropped_lines = Counter(
            "shopsearch_event_log_dropped_lines",
            "Lines not logged: queue full (disk too slow) or a write error.",
            registry=registry,
        )
        self.compacted = Counter(
            "shopsearch_event_log_compacted_rows",
            "Rows moved from the event log into the workspace tables, by table.",
            ["table"],
            registry=registry,
        )
        self.query_cache = Counter(
            "shopsearch_query_cache_lookups",
            "Query-vector cache lookups of dense sources, by source and result (hit, miss); "
            "hit rate = hit / (hit + miss).",
            ["source", "result"],
            registry=registry,
        )
        self.query_cache_evictions = Counter(
            "shopsearch_query_cache_evictions",
            "Query vectors dropped from a full cache (least recently used), by source.",
            ["source"],
            registry=registry,
        )
        self.result_cache = Counter(
            "shopsearch_result_cache_lookups",
            "Result cache lookups of the lexical source (candidates and facets of a query and "
            "its filters), by source and result (hit, miss).",
            ["source", "result"],
            registry=registry,
        )
        self.result_cache_evictions = Counter(
            "shopsearch_result_cache_evictions",
            "Results dropped from a full result cache (least recently used), by source.",
            ["source"],
            registry=registry,
        )
        self.response_cache = Counter(
            "shopsearch_response_cache_lookups",
            "Response cache lookups of anonymous searches (the whole answer), by result (hit, "
            "miss); source is always 'engine'.",
            ["source", "result"],
            registry=registry,
        )
        self.response_cache_evictions = Counter(
            "shopsearch_response_cache_evictions",
            "Answers dropped from a full response cache (least recently used).",
            ["source"],
            registry=registry,
        )
        self.encode_batches = Histogram(
            "shopsearch_query_encode_batch_size",
            "Distinct queries encoded per forward pass (concurrent searches batched), by source.",
            ["source"],
            buckets=_BATCH,
            registry=registry,
        )
        self.reloads = Counter(
            "shopsearch_reloads",
            "Bundle reloads by outcome (ok, refused).",
            ["outcome"],
            registry=registry,
        )
        # Labelled children by label values, so a request does not look them up again
        # (``labels()`` takes a lock and builds a key per call); a race only looks one up twice.
        self._answered: dict[tuple[str, str, int], tuple[Counter, Histogram, Counter | None]] = {}
        self._stage: dict[str, Histogram] = {}

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format."""
        self.observe_gc()
        if self.multiprocess:
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (route, method, status)
        children = self._answered.get(key)
        if children is None:
            kind = "server" if status >= 500 else "client"
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
                self.errors.labels(route, kind) if status >= 400 else None,
            )
            self._answered[key] = children
        requests, latency, errors = children
        requests.inc()
        latency.observe(seconds)
        if errors is not None:
            errors.inc()
        self.observe_gc()

    def observe_stages(self, timings_ms: Mapping[str, float]) -> None:
        """Record one search's stage timings."""
        for stage, ms in timings_ms.items():
            child = self._stage.get(stage)
            if child is None:
                child = self._stage[stage] = self.stages.labels(stage)
            child.observe(ms / 1000.0)

    def watch_engine(self, engine: Engine) -> None:
        """Count the query-vector cache and encoding batches of ``engine``'s sources with
        vectors, the result cache of its sources that count facets, and its response cache."""
        from shopsearch.retrieval.base import ServingOptions

        engine.responses.observer = self._cache_observer(
            self.response_cache, self.response_cache_evictions, "engine"
        )

        for name, source in engine.retrieval.sources.items():
            options = ServingOptions()
            if "vectors" in source.capabilities:
                options = ServingOptions(
                    query_cache_observer=self._cache_observer(
                        self.query_cache, self.query_cache_evictions, name
                    ),
                    batch_observer=self.encode_batches.labels(name).observe,
                )
            if "facets" in source.capabilities:
                options = ServingOptions(
                    result_cache_observer=self._cache_observer(
                        self.result_cache, self.result_cache_evictions, name
                    )
                )
            source.configure(options)

    @staticmethod
    def _cache_observer(
        lookups: Counter, evictions: Counter, source: str
    ) -> Callable[[int, int, int], None]:
        hit = lookups.labels(source, "hit")
        miss = lookups.labels(source, "miss")
        evicted = evictions.labels(source)

        def observe(hits: int, misses: int, evictions: int) -> None:
            if hits:
                hit.inc(hits)
            if misses:
                miss.inc(misses)
            if evictions:
                evicted.inc(evictions)

        return observe

    def observe_gc(self) -> None:
        """Move the collector's pauses recorded by :attr:`collections` into the histogram."""
        for generation, seconds in self.collections.drain():
            self.gc_pauses.labels(str(generation)).observe(seconds)

    def log_written(self, lines: int, nbytes: int, seconds: float) -> None:
        """Event log observer: a batch was written."""
        self.written_lines.inc(lines)
        self.write_seconds.observe(seconds)

    def log_dropped(self, lines: int) -> None:
        """Event log observer: lines were lost."""
        self.dropped_lines.inc(lines)


class MetricsMiddleware:
    """Times and counts every HTTP request by its route template (e.g. ``/products/{domain}/...``).

    Args:
        app: the wrapped ASGI app.
        metrics: where to record.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request and record it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(
                route, scope["method"], status, time.perf_counter() - start
            )
