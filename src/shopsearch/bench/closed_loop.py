"""Closed-loop load: N clients, each sending its next request as soon as the last is answered.

The most the server completes; by Little's law the mean latency is N / throughput, so latency
at high N measures the queue the clients themselves build. Each client keeps one keep-alive
connection (:mod:`shopsearch.bench.http_client`); a level stops at whichever of its
:class:`LoadBounds` is reached first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from shopsearch.bench.http_client import (
    HOST,
    REQUEST_TIMEOUT_S,
    Connection,
    connect_all,
    exchange,
)
from shopsearch.bench.timing import percentiles_ms


@dataclass(frozen=True)
class LoadBounds:
    """Limits of one concurrency level: it stops at whichever is reached first."""

    requests: int
    seconds: float


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


async def _client(level: _Level, port: int, connection: Connection | None) -> None:
    """One simulated client: requests back to back on one keep-alive connection."""
    try:
        while (request := level.next_request()) is not None:
            start = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    if connection is None:
                        connection = await asyncio.open_connection(HOST, port)
                    status, keep_alive = await exchange(*connection, request)
            except (
                OSError,
                TimeoutError,
                asyncio.IncompleteReadError,
                asyncio.LimitOverrunError,
                ValueError,
            ):
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
    connections = await connect_all(port, clients)
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
    return {
        "clients": clients,
        "requests": level.issued,
        "ok": int(ok.size),
        "errors": level.errors,
        "seconds": wall,
        "rps": ok.size / wall,
        **percentiles_ms(level.latencies),
        "mean_ms": float(ok.mean()) if ok.size else None,
        "max_ms": float(ok.max()) if ok.size else None,
        "client_cpu_share": cpu / wall,
    }
