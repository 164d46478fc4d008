"""What the server under test counts about itself while a level runs.

Its CPU time, for each process of its process group found in ``/proc``
(:func:`process_cpu_seconds`; summed: :func:`server_cpu_seconds`), and its query-cache,
result-cache and encoding-batch counters, read from ``/metrics``.
:func:`counted_level` reads both before and after a level and adds the differences to the
level's row.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shopsearch.bench.http_client import get

#: The garbage collector's generations (``shopsearch_gc_pause_seconds{generation}``).
GENERATIONS = (0, 1, 2)


def counted_level(
    port: int, pid: int, mode: str, run: Callable[[], Mapping[str, Any]]
) -> dict[str, Any]:
    """Run one level (``run()``) and add what the server counted meanwhile to its row.

    Args:
        port: the server's port (its ``/metrics``).
        pid: the server's process id (its process group's CPU time).
        mode: the row's first key, ``mode``: ``"closed"`` or ``"open"``.
        run: runs the level; returns its row (with ``ok`` and ``seconds``).

    Returns:
        ``mode``, the level's row, ``query_cache`` (query-vector cache hits, misses and hit
        rate, lexical result-cache hit rate, encoding batches and their mean size) and the
        server's CPU (``server_cpu_ms_per_request``, ``server_cpu_share``, ``capacity_rps``),
        ``gc_pauses``: the garbage collector's stops during the level per generation
        (``count``, ``seconds``), summed over the workers, and ``worker_cpu``: how the CPU
        was split over the server's processes (see :func:`worker_split`).
    """
    before, processes = _metric_sums(port), process_cpu_seconds(pid)
    cpu = sum(processes.values()) if processes else None
    row: dict[str, Any] = {"mode": mode, **run()}
    after = _metric_sums(port)
    row["query_cache"] = _cache_delta(before, after)
    row["gc_pauses"] = {
        str(g): {
            "count": after[f"gc{g}_count"] - before[f"gc{g}_count"],
            "seconds": after[f"gc{g}_sum"] - before[f"gc{g}_sum"],
        }
        for g in GENERATIONS
    }
    later = process_cpu_seconds(pid)
    row.update(_server_cpu(cpu, sum(later.values()) if later else None, row))
    row["worker_cpu"] = worker_split(processes, later, row["seconds"])
    return row


def process_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each process of ``pid``'s process group.

    The server runs in a session of its own, so this is the server and all its workers. Linux
    only (reads ``/proc``); empty elsewhere.
    """
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pid:  # field 5 of stat: the process group
                member = int(stat.parent.name)
                found[member] = _cpu_clock_seconds(member)
                if found[member] < 0:  # no CPU clock: whole clock ticks from stat
                    found[member] = (int(fields[11]) + int(fields[12])) / ticks
    return found


def _cpu_clock_seconds(pid: int) -> float:
    """``pid``'s CPU time to the nanosecond from its CPU-time clock (-1.0: not readable).

    ``/proc/<pid>/stat`` counts whole clock ticks (10 ms), more than a short level's server
    work; Linux lets any process read another's CPU-time clock, whose id is
    ``clock_getcpuclockid(pid)``: ``(~pid << 3) | 2`` (the process-wide scheduler clock).
    """
    try:
        return time.clock_gettime((~pid << 3) | 2)
    except (OSError, OverflowError, AttributeError):
        return -1.0


def server_cpu_seconds(pid: int) -> float | None:
    """CPU seconds used so far by the server and its workers (``None``: not found)."""
    found = process_cpu_seconds(pid)
    return sum(found.values()) if found else None


def worker_split(
    before: Mapping[int, float], after: Mapping[int, float], seconds: float
) -> dict[str, Any]:
    """How a level's server CPU fell on its processes.

    Each worker keeps the keep-alive connections it accepted, so the load of a level with few
    long-lived connections can fall unevenly; a worker is one thread of search work, and the
    busiest one queues first.

    Returns:
        ``shares``: each process's part of the server's CPU during the level, largest first
        (the supervisor of several workers is among them, near 0); ``busiest_utilisation``:
        the busiest process's CPU seconds per second of the level (1.0 = one core all the
        time; ``None`` without CPU figures).
    """
    used = {p: after[p] - before.get(p, 0.0) for p in after}
    total = sum(used.values())
    if not used or total <= 0 or seconds <= 0:
        return {"shares": [], "busiest_utilisation": None}
    ordered = sorted(used.values(), reverse=True)
    return {
        "shares": [round(v / total, 3) for v in ordered],
        "busiest_utilisation": ordered[0] / seconds,
    }


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


def _metric_sums(port: int) -> dict[str, float]:
    """Query-cache and result-cache hits and misses and encoding-batch totals from ``/metrics``
    (summed over sources and, with several workers, over workers)."""
    status, body = get(port, "/metrics")
    sums = dict.fromkeys(
        (
            "hit",
            "miss",
            "result_hit",
            "result_miss",
            "response_hit",
            "response_miss",
            "batch_sum",
            "batch_count",
        ),
        0.0,
    )
    sums.update({f"gc{g}_{part}": 0.0 for g in GENERATIONS for part in ("count", "sum")})
    if status != 200:
        return sums
    for line in body.decode(errors="replace").splitlines():
        if line.startswith("shopsearch_query_cache_lookups_total{"):
            kind = "hit" if 'result="hit"' in line else "miss"
            sums[kind] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("shopsearch_result_cache_lookups_total{"):
            kind = "result_hit" if 'result="hit"' in line else "result_miss"
            sums[kind] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("shopsearch_response_cache_lookups_total{"):
            kind = "response_hit" if 'result="hit"' in line else "response_miss"
            sums[kind] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("shopsearch_gc_pause_seconds_"):
            name, _, value = line.rpartition(" ")
            for g in GENERATIONS:
                if f'generation="{g}"' in name and ("_count{" in name or "_sum{" in name):
                    part = "count" if "_count{" in name else "sum"
                    sums[f"gc{g}_{part}"] += float(value)
        elif line.startswith("shopsearch_query_encode_batch_size_sum{"):
            sums["batch_sum"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("shopsearch_query_encode_batch_size_count{"):
            sums["batch_count"] += float(line.rsplit(" ", 1)[1])
    return sums


def _cache_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    hits, misses = after["hit"] - before["hit"], after["miss"] - before["miss"]
    result_hits = after["result_hit"] - before["result_hit"]
    result_lookups = result_hits + after["result_miss"] - before["result_miss"]
    response_hits = after["response_hit"] - before["response_hit"]
    response_lookups = response_hits + after["response_miss"] - before["response_miss"]
    batches = after["batch_count"] - before["batch_count"]
    return {
        "hits": hits,
        "misses": misses,
        "hit_rate": hits / (hits + misses) if hits + misses else None,
        "result_hit_rate": result_hits / result_lookups if result_lookups else None,
        "response_hit_rate": response_hits / response_lookups if response_lookups else None,
        "encode_batches": batches,
        "mean_encode_batch": (after["batch_sum"] - before["batch_sum"]) / batches
        if batches
        else None,
    }
