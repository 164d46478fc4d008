"""``shopsearch bench serve``: requests/s and latency of ``shopsearch serve`` under load.

The server runs as a subprocess (``shopsearch serve``) on 127.0.0.1 and a free port, once per
``--workers`` value; the benchmark waits for ``/health``, checks one ``/search`` answer, sends a
few warm-up requests, then loads it at each concurrency level. Every level is bounded by a
request count and by seconds, every request by a timeout, and the server is always terminated.

The load generator runs in this process on the same machine: raw asyncio HTTP/1.1 over one
keep-alive connection per simulated client, with requests encoded before timing and responses
read by ``Content-Length`` without parsing JSON, so the client spends little CPU per request.
Its CPU time is still reported per level (``client_cpu_share``: the share of one core it used),
because it competes with the server for the same cores.

Queries are the workspace's logged query texts drawn with their logged frequencies (see
:func:`shopsearch.bench.retrieval.bench_queries`), searched in all domains with ``size=10`` and
no explanation. They form one stream: the warm-up takes its first requests and every level
(server run) the next ``requests`` of it, never replaying earlier ones, so the server's
query-vector and result caches see what a server with that traffic would see. Each level
reports the query-vector cache's hits and misses in it and the lexical result cache's hit rate
(``query_cache``, read from ``/metrics``) and the mean encoding batch size. After the server
stops, a fresh in-process ``Engine`` gets the same warm-up and then the first level's queries
one at a time with the same parameters, so ``http_overhead_ratio`` = (HTTP p50 at the first
level, normally 1 client − engine p50) / engine p50 is measured, not estimated.

Two kinds of levels:

- closed loop (``--concurrency``): N clients, each sending its next request as soon as the
  last is answered: the most the server completes. By Little's law the mean latency is
  N / throughput, so latency at high N measures the queue the clients themselves build.
- open loop (``--rate``): requests arrive at a fixed rate (Poisson or evenly spaced) over up to
  ``--connections`` connections, and latency counts from each request's scheduled time
  (:mod:`shopsearch.bench.open_loop`): the latency shoppers arriving at that rate would see.

Settings overrides (``--query-cache-size`` ...) reach the server as ``SHOPSEARCH_...``
environment variables and the in-process engine as settings.

The server logs every search it answers, as it does for real traffic, and that logging is part
of what is measured; but it serves a hard-linked snapshot of the workspace
(:func:`snapshot_workspace`), so benchmark searches never enter the workspace's own logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import orjson

from shopsearch.bench.open_loop import Arrivals, arrival_offsets, run_open_loop
from shopsearch.bench.retrieval import bench_queries
from shopsearch.bench.timing import measure
from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError, ShopSearchError
from shopsearch.events.log import LOG_DIR
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.progress import Say
from shopsearch.serve.engines import SIGNAL_DIR
from shopsearch.serve.request_ids import SECRET_FILE
from shopsearch.serve.threads import compute_threads_limited
from shopsearch.store.bundles import CURRENT_FILE, current_bundle
from shopsearch.store.workspace import Workspace

HOST = "127.0.0.1"
PAGE_SIZE = 10
STARTUP_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
WARMUP_REQUESTS = 20
# Workspace folders and files a server does not read (its log, secret and signals are made anew).
_NOT_SERVED = frozenset({LOG_DIR, SECRET_FILE, SIGNAL_DIR, "cache", "ground_truth", "rejects"})
# Run the CLI through this interpreter: works whether or not the venv's bin/ is on PATH.
_SERVE = "from shopsearch.cli import main; main()"


@dataclass(frozen=True)
class LoadBounds:
    """Limits of one concurrency level: it stops at whichever is reached first."""

    requests: int
    seconds: float


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


# -- the server ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _get(port: int, path: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _wait_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ShopSearchError(
                f"the server exited with status {process.returncode} before answering /health; "
                f"its last output:\n{_tail(log)}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            if _get(port, "/health")[0] == 200:
                return
        time.sleep(0.2)
    raise ShopSearchError(
        f"the server did not answer /health within {STARTUP_TIMEOUT_S:.0f} s; "
        f"its last output:\n{_tail(log)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # uvicorn shuts its workers down on SIGTERM
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
    # The server got its own process group: end any worker that outlived it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_server(
    workspace: Path, workers: int, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[int]:
    """Run ``shopsearch serve`` on 127.0.0.1 until the block ends; yields its port.

    Args:
        workspace: the workspace to serve (it must have a current bundle).
        workers: server worker processes.
        log: file receiving the server's output (its tail is shown if it fails to start).
        env: extra environment variables of the server (settings overrides).
    """
    with server_process(workspace, workers, log, env) as (port, _):
        yield port


def server_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by the processes of ``pid``'s process group.

    The server runs in a session of its own, so this is the server and all its workers. Linux
    only (reads ``/proc``); ``None`` elsewhere.
    """
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pid:  # field 5 of stat: the process group
                total += int(fields[11]) + int(fields[12])  # utime, stime
                found = True
    return total / ticks if found else None


@contextlib.contextmanager
def server_process(
    workspace: Path, workers: int, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[int, int]]:
    """:func:`running_server`, yielding its port and the server's process id."""
    port = _free_port()
    command = [
        sys.executable, "-c", _SERVE, "serve", "--workspace", str(workspace),
        "--host", HOST, "--port", str(port), "--workers", str(workers),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        try:
            _wait_healthy(process, port, log)
            yield port, process.pid
        finally:
            _stop(process)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def snapshot_workspace(workspace: Workspace, into: Path) -> Path:
    """A copy of what serving reads (tables, the current bundle, settings), made of hard links.

    The benchmark serves the snapshot, so its searches are logged there, at the same cost, and
    never reach the workspace's own logs (they would become training data). Hard links are safe
    because every workspace write replaces files by rename and never changes one in place; where
    linking fails (another file system) the file is copied.
    """
    root, models = workspace.root.resolve(), workspace.root.resolve() / "models"
    bundle = current_bundle(workspace)

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        if here == root:
            return {n for n in names if n in _NOT_SERVED or n.startswith(".")}
        if here == models:
            return {n for n in names if n not in (CURRENT_FILE, bundle.name)}
        return set()

    shutil.copytree(root, into, ignore=ignore, copy_function=_link_or_copy)
    return into


def _check_search(port: int, path: str, log: Path) -> None:
    status, body = _get(port, path)
    answer = orjson.loads(body) if body.startswith(b"{") else None
    if status != 200 or not isinstance(answer, dict) or "items" not in answer:
        raise ShopSearchError(
            f"GET {path} answered {status} {body[:300]!r}; expected 200 with a JSON body "
            f"holding 'items'; the server's last output:\n{_tail(log)}"
        )


# -- the load generator --------------------------------------------------------------------------


def _search_paths(queries: Sequence[str]) -> list[str]:
    return [f"/search?{urlencode({'q': q, 'size': PAGE_SIZE})}" for q in queries]


def _request_bytes(port: int, paths: Sequence[str]) -> list[bytes]:
    head = f"Host: {HOST}:{port}\r\nAccept: application/json\r\n\r\n"
    return [f"GET {path} HTTP/1.1\r\n{head}".encode() for path in paths]


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """Send one request and read its response; returns (status, connection kept alive)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
    if length is None:
        raise ConnectionError("the server answered without Content-Length")
    await reader.readexactly(length)
    return status, keep_alive


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Level:
    """The shared state of one concurrency level: the request budget and what was measured."""

    def __init__(self, requests: Sequence[bytes], bounds: LoadBounds) -> None:
        self.requests = requests
        self.budget = bounds.requests
        self.deadline = time.perf_counter() + bounds.seconds
        self.issued = 0
        self.errors = 0
        self.latencies: list[float] = []

    def next_request(self) -> bytes | None:
        """The next request to send, or ``None`` when the count or the time is used up."""
        if self.issued >= self.budget or time.perf_counter() >= self.deadline:
            return None
        request = self.requests[self.issued % len(self.requests)]
        self.issued += 1
        return request


async def _connect(port: int) -> Connection | None:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await asyncio.open_connection(HOST, port)
    except (OSError, TimeoutError):
        return None  # the client connects again with its first request


async def _client(level: _Level, port: int, connection: Connection | None) -> None:
    """One simulated client: requests back to back on one keep-alive connection."""
    try:
        while (request := level.next_request()) is not None:
            start = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    if connection is None:
                        connection = await asyncio.open_connection(HOST, port)
                    status, keep_alive = await _exchange(*connection, request)
            except (OSError, TimeoutError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError, ValueError):
                level.errors += 1
                keep_alive = False
            else:
                if status == 200:
                    level.latencies.append(time.perf_counter() - start)
                else:
                    level.errors += 1
            if not keep_alive and connection is not None:
                connection[1].close()
                connection = None
    finally:
        if connection is not None:
            connection[1].close()


async def _run_level(
    port: int, requests: Sequence[bytes], clients: int, bounds: LoadBounds
) -> tuple[_Level, float, float]:
    """The level, its wall seconds and this process's CPU seconds, connections opened first."""
    connections = await asyncio.gather(*(_connect(port) for _ in range(clients)))
    cpu, start = time.process_time(), time.perf_counter()
    level = _Level(requests, bounds)
    await asyncio.gather(*(_client(level, port, c) for c in connections))
    return level, time.perf_counter() - start, time.process_time() - cpu


def load_level(
    port: int, requests: Sequence[bytes], clients: int, bounds: LoadBounds
) -> dict[str, float | int | None]:
    """Send ``requests`` (cycled) from ``clients`` concurrent clients; throughput and latency.

    Latency percentiles are over successful (200) answers; ``errors`` counts other statuses,
    timeouts and broken connections; ``client_cpu_share`` is the load generator's CPU time over
    the level's wall time (1.0 = one core busy).
    """
    level, wall, cpu = asyncio.run(_run_level(port, requests, clients, bounds))
    ok = np.asarray(level.latencies, dtype=np.float64) * 1000
    percentiles = (
        {f"p{p}_ms": float(np.percentile(ok, p)) for p in (50, 95, 99)}
        if ok.size
        else dict.fromkeys(("p50_ms", "p95_ms", "p99_ms"))
    )
    return {
        "clients": clients,
        "requests": level.issued,
        "ok": int(ok.size),
        "errors": level.errors,
        "seconds": wall,
        "rps": ok.size / wall,
        **percentiles,
        "mean_ms": float(ok.mean()) if ok.size else None,
        "max_ms": float(ok.max()) if ok.size else None,
        "client_cpu_share": cpu / wall,
    }


def _percentiles(seconds: Sequence[float], prefix: str = "") -> dict[str, float | None]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    if not ms.size:
        return dict.fromkeys(f"{prefix}p{p}_ms" for p in (50, 95, 99))
    return {f"{prefix}p{p}_ms": float(np.percentile(ms, p)) for p in (50, 95, 99)}


async def _open_connections(port: int, slots: int) -> list[Connection | None]:
    return list(await asyncio.gather(*(_connect(port) for _ in range(slots))))


async def _run_open(
    port: int, requests: Sequence[bytes], offsets: np.ndarray, slots: int
) -> tuple[Any, float]:
    connections = await _open_connections(port, slots)

    async def exchange(slot: int, request: bytes) -> int:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                connection = connections[slot]
                if connection is None:
                    connection = connections[slot] = await asyncio.open_connection(HOST, port)
                status, keep_alive = await _exchange(*connection, request)
        except BaseException:
            if connections[slot] is not None:
                connections[slot][1].close()  # type: ignore[index]
                connections[slot] = None
            raise
        if not keep_alive:
            connection[1].close()
            connections[slot] = None
        return status

    cpu = time.process_time()
    try:
        run = await run_open_loop(requests, offsets, slots, exchange)
    finally:
        for connection in connections:
            if connection is not None:
                connection[1].close()
    return run, time.process_time() - cpu


def open_level(
    port: int,
    requests: Sequence[bytes],
    rate: float,
    slots: int,
    arrivals: Arrivals = "poisson",
    seed: int = 0,
) -> dict[str, float | int | str | None]:
    """Offer ``requests`` at ``rate`` per second over up to ``slots`` connections (open loop).

    Latency percentiles count from each request's scheduled send time (queueing included);
    ``service_p*_ms`` from the time it went out; ``client_lag_p99_ms`` is how late the load
    generator itself sent (large values mean the generator, not the server, fell behind).
    """
    offsets = arrival_offsets(rate, len(requests), arrivals, seed)
    run, cpu = asyncio.run(_run_open(port, requests, offsets, slots))
    ok = len(run.latencies)
    wall = max(run.wall, 1e-9)
    lat = np.asarray(run.latencies, np.float64) * 1000
    return {
        "mode": "open",
        "rate": rate,
        "arrivals": arrivals,
        "connections": slots,
        "requests": len(requests),
        "ok": ok,
        "errors": run.errors,
        "seconds": run.wall,
        "offered_rps": len(requests) / float(offsets[-1]) if len(offsets) > 1 else None,
        "rps": ok / wall,
        **_percentiles(run.latencies),
        "mean_ms": float(lat.mean()) if ok else None,
        "max_ms": float(lat.max()) if ok else None,
        **_percentiles(run.service, "service_"),
        "client_lag_p99_ms": float(np.percentile(np.asarray(run.lags) * 1000, 99))
        if run.lags else None,
        "client_cpu_share": cpu / wall,
    }


# -- the server's own counters -------------------------------------------------------------------


def _metric_sums(port: int) -> dict[str, float]:
    """Query-cache and result-cache hits and misses and encoding-batch totals from ``/metrics``
    (summed over sources and, with several workers, over workers)."""
    status, body = _get(port, "/metrics")
    sums = dict.fromkeys(
        ("hit", "miss", "result_hit", "result_miss", "batch_sum", "batch_count"), 0.0
    )
    if status != 200:
        return sums
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("shopsearch_query_cache_lookups_total{"):
            kind = "hit" if 'result="hit"' in line else "miss"
            sums[kind] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("shopsearch_result_cache_lookups_total{"):
            kind = "result_hit" if 'result="hit"' in line else "result_miss"
            sums[kind] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("shopsearch_query_encode_batch_size_sum{"):
            sums["batch_sum"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("shopsearch_query_encode_batch_size_count{"):
            sums["batch_count"] += float(line.rsplit(" ", 1)[1])
    return sums


def _cache_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
    result_hits = after["result_hit"] - before["result_hit"]
    result_lookups = result_hits + after["result_miss"] - before["result_miss"]
    batches = after["batch_count"] - before["batch_count"]
    return {
        "hits": hits,
        "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else None,
        "result_hit_rate": result_hits / result_lookups if result_lookups else None,
        "encode_batches": batches,
        "mean_encode_batch": (after["batch_sum"] - before["batch_sum"]) / batches
        if batches else None,
    }


# -- the benchmark -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenLoad:
    """Open-loop levels: arrival rates (requests/s), arrival process, most connections."""

    rates: Sequence[float] = ()
    arrivals: Arrivals = "poisson"
    connections: int = 32


def _open_count(rate: float, bounds: LoadBounds) -> int:
    return max(1, min(bounds.requests, int(rate * bounds.seconds)))


def _serve_levels(
    workspace: Workspace, workers: int, stream: Sequence[str], concurrency: Sequence[int],
    open_load: OpenLoad, bounds: LoadBounds, env: Mapping[str, str], seed: int, say: Say,
) -> dict[str, dict[str, Any]]:
    with tempfile.TemporaryDirectory(dir=workspace.dir("cache"), prefix="bench-serve-") as tmp:
        served = snapshot_workspace(workspace, Path(tmp) / "workspace")
        say(f"starting shopsearch serve with {workers} worker(s)")
        log = Path(tmp) / "server.log"
        with server_process(served, workers, log, env) as (port, pid):
            requests = _request_bytes(port, _search_paths(stream))
            _check_search(port, _search_paths(stream[:1])[0], log)
            warm = requests[:WARMUP_REQUESTS]
            load_level(port, warm, 1, LoadBounds(len(warm), bounds.seconds))
            offset = WARMUP_REQUESTS
            levels: dict[str, dict[str, Any]] = {}
            for clients in concurrency:
                part = requests[offset : offset + bounds.requests]
                offset += bounds.requests
                before, cpu = _metric_sums(port), server_cpu_seconds(pid)
                row: dict[str, Any] = {"mode": "closed", **load_level(port, part, clients, bounds)}
                row["query_cache"] = _cache_delta(before, _metric_sums(port))
                row.update(_server_cpu(cpu, server_cpu_seconds(pid), row))
                levels[str(clients)] = row
                say(
                    f"workers {workers}, {clients:3} clients (closed): {row['rps']:8.1f} req/s, "
                    f"p50 {_ms(row['p50_ms'])}, p99 {_ms(row['p99_ms'])}, "
                    f"{row['errors']} errors, cache hits {_share(row['query_cache']['hit_rate'])}"
                    f" (results {_share(row['query_cache']['result_hit_rate'])})"
                    f", server cpu {_ms(row['server_cpu_ms_per_request'])}/request"
                    f", client cpu {row['client_cpu_share']:.0%}"
                )
            for rate in open_load.rates:
                count = _open_count(rate, bounds)
                part = requests[offset : offset + count]
                offset += count
                before, cpu = _metric_sums(port), server_cpu_seconds(pid)
                row = dict(
                    open_level(port, part, rate, open_load.connections, open_load.arrivals, seed)
                )
                row["query_cache"] = _cache_delta(before, _metric_sums(port))
                row.update(_server_cpu(cpu, server_cpu_seconds(pid), row))
                levels[f"rate-{rate:g}"] = row
                say(
                    f"workers {workers}, {rate:g} req/s offered (open, {open_load.arrivals}): "
                    f"{row['rps']:8.1f} req/s, p50 {_ms(row['p50_ms'])}, "
                    f"p99 {_ms(row['p99_ms'])}, {row['errors']} errors, "
                    f"cache hits {_share(row['query_cache']['hit_rate'])} "
                    f"(results {_share(row['query_cache']['result_hit_rate'])}), "
                    f"server cpu {_ms(row['server_cpu_ms_per_request'])}/request"
                )
    return levels


def _server_cpu(
    before: float | None, after: float | None, row: Mapping[str, Any]
) -> dict[str, float | None]:
    """The server's CPU per answered request and the rate its cores would allow.

    ``capacity_rps`` = CPU cores / CPU seconds per request: the requests/s the server could
    answer with every core of this machine its own. Unlike ``rps`` it hardly depends on other
    programs sharing the cores, so it is the figure to compare runs on a busy machine with.
    """
    if before is None or after is None or not row["ok"]:
        return {"server_cpu_ms_per_request": None, "capacity_rps": None}
    per_request = (after - before) / row["ok"]
    cores = os.cpu_count() or 1
    return {
        "server_cpu_ms_per_request": 1000 * per_request,
        "server_cpu_share": (after - before) / row["seconds"] if row["seconds"] else None,
        "capacity_rps": cores / per_request if per_request > 0 else None,
    }


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.2f} ms"


def _share(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.0%}"


#: Settings the benchmark can override: option name → settings path.
OVERRIDES = {
    "query_cache_size": ("retrieval", "query_cache_size"),
    "result_cache_size": ("retrieval", "result_cache_size"),
    "query_batch": ("retrieval", "query_batch"),
    "search_concurrency": ("serve", "search_concurrency"),
    "compute_threads": ("serve", "compute_threads"),
}


def _overridden(
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
    settings, env = _overridden(settings, overrides or {})
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
            workspace, w, stream, concurrency, open_load, bounds, env, seed, say
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
        first = stream[WARMUP_REQUESTS : WARMUP_REQUESTS + max(answered, 1)]
        for query in stream[:WARMUP_REQUESTS]:
            engine.search(SearchParams(query, size=PAGE_SIZE))
        timed = measure(
            lambda q: engine.search(SearchParams(q, size=PAGE_SIZE)), first, warmup=0
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
            "workers": list(workers),
            "overrides": dict(overrides or {}),
            "query_cache_size": settings.retrieval.query_cache_size,
            "result_cache_size": settings.retrieval.result_cache_size,
            "query_batch": settings.retrieval.query_batch,
            "search_concurrency": settings.serve.search_concurrency,
            "compute_threads": settings.serve.compute_threads,
            "size": PAGE_SIZE,
            "warmup_requests": WARMUP_REQUESTS,
            "request_timeout_s": REQUEST_TIMEOUT_S,
            "client": "asyncio raw HTTP/1.1, keep-alive connections, same machine",
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
