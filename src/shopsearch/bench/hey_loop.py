"""Open-loop levels driven by ``hey``, a compiled load generator (Debian package ``hey``).

The Python generator (:mod:`shopsearch.bench.open_loop`) runs on the same two cores as the
server, so part of a tail it measures may be its own. ``hey`` is a Go program: its CPU per
request is small, and it is measured (:func:`hey_level` reports ``client_cpu_share``, the
share of one core the ``hey`` processes used, from ``getrusage(RUSAGE_CHILDREN)``).

How a level maps onto ``hey`` (``hey -z D -c C -q Q -m GET -o csv URL``):

- ``hey`` sends one URL. To offer several logged queries, a level runs ``K`` ``hey`` processes
  at once, each on one query's URL (:func:`hey_plan`), splitting the ``connections`` between
  them; every ``hey`` worker (connection) is paced at ``rate / connections`` requests/s
  (``-q`` is per worker), so together they offer ``rate``. The query mix is therefore ``K``
  distinct queries in equal shares, not the logged stream: with the server's query-vector and
  result caches on, every request after a query's first would be a cache hit, so the
  benchmark turns both caches off for ``hey`` runs unless they are set explicitly
  (:mod:`shopsearch.bench.serve`), and every row reports the caches' hit rates.
- ``hey`` paces each worker with a ticker, and the tickers of one process fire together: its
  workers send in bursts. The processes are started spread over one tick interval
  (:func:`start_offsets`), so with one connection per process (``processes`` =
  ``connections``, the default of ``bench serve``) arrivals are evenly spaced, comparable to
  the Python generator's ``--arrivals uniform``; with fewer processes they come in bursts
  of ``connections / processes``.
- ``hey`` measures latency from the moment a request is
  *sent*; a worker whose answer comes later than its next tick skips ticks (coordinated
  omission). The level therefore reports ``scheduled`` (what the tickers would send in ``D``
  seconds) beside ``requests`` (what was sent and answered); ``missing`` = scheduled −
  requests counts the sends ``hey`` skipped plus transport failures (``hey``'s CSV lists only
  requests that got an HTTP answer). When ``missing`` is ~0 the send-time latency is the
  latency of the offered schedule; when it is not, the server did not keep up and the
  percentiles understate the tail.
- ``hey``'s CSV gives each response time with 0.1 ms resolution.
"""

from __future__ import annotations

import contextlib
import csv
import math
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shopsearch.bench.http_client import HOST, REQUEST_TIMEOUT_S
from shopsearch.bench.timing import percentiles_ms
from shopsearch.errors import InvalidInputError, ShopSearchError

MISSING_HEY = (
    "the hey load generator is not installed (no 'hey' on PATH); install it with "
    "'apt-get install hey', or use --generator python"
)
#: Seconds a ``hey`` process may run beyond its duration before it is killed.
GRACE_S = REQUEST_TIMEOUT_S + 10.0


def hey_binary() -> str:
    """The path of ``hey``, or a clear error saying how to install it."""
    found = shutil.which("hey")
    if found is None:
        raise ShopSearchError(MISSING_HEY)
    return found


@dataclass(frozen=True)
class HeyProcess:
    """One ``hey`` process of a level: the path it requests, its workers and their pace."""

    path: str
    connections: int
    per_connection_rps: float


def hey_plan(
    paths: Sequence[str], rate: float, connections: int, processes: int
) -> list[HeyProcess]:
    """Split ``rate`` req/s over ``connections`` workers of up to ``processes`` ``hey`` runs.

    The runs request the first distinct paths of ``paths`` (one each); there are
    ``min(processes, connections, distinct paths)`` of them, the connections are split as
    evenly as possible and every connection is paced at ``rate / connections``.
    """
    if rate <= 0 or connections < 1 or processes < 1:
        raise InvalidInputError(
            f"rate={rate}, connections={connections}, processes={processes} are not allowed; "
            "use rate > 0, connections >= 1, processes >= 1"
        )
    distinct = list(dict.fromkeys(paths))
    count = min(processes, connections, len(distinct))
    if count == 0:
        raise InvalidInputError("no query to send; the level has no requests")
    base, extra = divmod(connections, count)
    pace = rate / connections
    return [
        HeyProcess(path, base + (1 if i < extra else 0), pace)
        for i, path in enumerate(distinct[:count])
    ]


def hey_command(binary: str, port: int, process: HeyProcess, seconds: float) -> list[str]:
    """The ``hey`` command line of one process of a level (CSV of every answered request)."""
    return [
        binary,
        "-z",
        f"{seconds:g}s",
        "-c",
        str(process.connections),
        "-q",
        f"{process.per_connection_rps:.6g}",
        "-m",
        "GET",
        "-t",
        f"{REQUEST_TIMEOUT_S:g}",
        "-disable-compression",  # the Python generator does not ask for gzip either
        "-cpus",
        "1",
        "-o",
        "csv",
        f"http://{HOST}:{port}{process.path}",
    ]


@dataclass
class HeyRows:
    """What ``hey``'s CSV holds: per answered request, latency (s), status, send offset (s)."""

    latencies: list[float]
    statuses: list[int]
    ends: list[float]


def parse_hey_csv(text: str) -> HeyRows:
    """The rows of ``hey -o csv`` output (header ``response-time,...,status-code,offset``)."""
    rows = HeyRows([], [], [])
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None:
        return rows
    needed = {"response-time", "status-code", "offset"}
    if not needed <= set(reader.fieldnames):
        raise ShopSearchError(f"hey wrote CSV without {sorted(needed)}: {reader.fieldnames}")
    for row in reader:
        latency = float(row["response-time"])
        rows.latencies.append(latency)
        rows.statuses.append(int(row["status-code"]))
        rows.ends.append(float(row["offset"]) + latency)
    return rows


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def start_offsets(plan: Sequence[HeyProcess]) -> list[float]:
    """When each process of ``plan`` starts, in seconds after the first: spread evenly over
    one tick interval, so the processes' tickers do not all fire at the same instant."""
    interval = 1.0 / plan[0].per_connection_rps if plan else 0.0
    return [i * interval / len(plan) for i in range(len(plan))]


def _run_all(
    commands: Sequence[list[str]], offsets: Sequence[float], seconds: float, folder: Path
) -> list[str]:
    """Start the commands at ``offsets`` seconds from now and wait for all; each one's standard
    output (fails on a non-zero exit)."""
    outs = [folder / f"hey-{i}.csv" for i in range(len(commands))]
    errs = [folder / f"hey-{i}.err" for i in range(len(commands))]
    started: list[subprocess.Popen[bytes]] = []
    begin = time.perf_counter()
    try:
        for command, offset, out, err in zip(commands, offsets, outs, errs, strict=True):
            wait = begin + offset - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            with out.open("wb") as stdout, err.open("wb") as stderr:
                started.append(subprocess.Popen(command, stdout=stdout, stderr=stderr))
        for process in started:
            process.wait(timeout=seconds + GRACE_S)
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=5)
    for process, err in zip(started, errs, strict=True):
        if process.returncode != 0:
            raise ShopSearchError(
                f"hey exited with status {process.returncode}: "
                f"{err.read_text(errors='replace')[-500:]}"
            )
    return [out.read_text() for out in outs]


def hey_level(
    port: int, paths: Sequence[str], rate: float, connections: int, seconds: float, processes: int
) -> dict[str, Any]:
    """Offer ``rate`` req/s for ``seconds`` with ``hey`` (see the module docstring).

    Returns the level's row: ``generator`` ``"hey"``, ``scheduled``, ``requests`` (answered
    with any status), ``ok``, ``errors`` (non-200), ``missing``, ``rps``, latency percentiles
    from send time, ``client_cpu_share`` and ``client_cpu_ms_per_request`` of the ``hey``
    processes, and the plan (``queries``, ``hey_processes``).
    """
    binary = hey_binary()
    if seconds <= 0:
        raise InvalidInputError(f"seconds={seconds} leaves nothing to measure; use seconds > 0")
    plan = hey_plan(paths, rate, connections, processes)
    commands = [hey_command(binary, port, p, seconds) for p in plan]
    cpu = _children_cpu()
    with tempfile.TemporaryDirectory(prefix="shopsearch-hey-") as tmp:
        outputs = _run_all(commands, start_offsets(plan), seconds, Path(tmp))
    cpu = _children_cpu() - cpu
    latencies: list[float] = []
    ends: list[float] = []
    errors = 0
    for output in outputs:
        rows = parse_hey_csv(output)
        ends.extend(rows.ends)
        errors += sum(1 for s in rows.statuses if s != 200)
        latencies.extend(t for t, s in zip(rows.latencies, rows.statuses, strict=True) if s == 200)
    # Every worker's ticker fires every 1 / pace seconds, the first one after 1 / pace; a
    # worker waiting for its tick when the duration ends still sends on that tick (hey checks
    # for the stop only between requests), so it sends ceil(seconds * pace) requests.
    scheduled = sum(p.connections * math.ceil(seconds * p.per_connection_rps - 1e-9) for p in plan)
    answered = len(ends)
    wall = max(max(ends, default=0.0), seconds)
    lat = np.asarray(latencies, np.float64) * 1000
    return {
        "generator": "hey",
        "rate": rate,
        "connections": connections,
        "queries": len(plan),
        "hey_processes": len(plan),
        "per_connection_rps": rate / connections,
        "scheduled": scheduled,
        "requests": answered,
        "ok": len(latencies),
        "errors": errors,
        "missing": max(0, scheduled - answered),
        "seconds": wall,
        "offered_rps": scheduled / seconds,
        "rps": len(latencies) / wall,
        **percentiles_ms(latencies),
        "mean_ms": float(lat.mean()) if lat.size else None,
        "max_ms": float(lat.max()) if lat.size else None,
        "latency_from": "send time (hey; see missing)",
        "client_cpu_share": cpu / wall,
        "client_cpu_ms_per_request": 1000 * cpu / answered if answered else None,
    }
