"""Open-loop load: requests arrive on a schedule, whether or not earlier ones were answered.

A closed loop (N clients, each sending its next request when the last one is answered) can
only offer what the server completes, so by Little's law its latency is N / throughput: 32
clients at 300 req/s wait ~107 ms on average however fast each search is. Real storefront
traffic is open: shoppers do not wait for each other. Here arrivals follow a fixed schedule
(:func:`arrival_offsets`: Poisson or evenly spaced at ``rate`` per second), each request goes
out on the first free one of ``slots`` connections, and its latency is measured from its
*scheduled* time, so time spent waiting for a connection or in the server's queue counts (no
coordinated omission: a slow answer cannot hold back the requests behind it unrecorded).

:func:`run_open_loop` is the schedule over any ``exchange``; :func:`open_level` runs it against
the server under test over keep-alive connections (:mod:`shopsearch.bench.http_client`) and
reports the level.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from shopsearch.bench.http_client import HOST, REQUEST_TIMEOUT_S, connect_all, exchange
from shopsearch.bench.timing import percentiles_ms
from shopsearch.errors import InvalidInputError

Arrivals = Literal["poisson", "uniform"]
#: ``exchange(slot, request)``: send ``request`` on connection ``slot`` (0 .. slots-1, used by
#: one request at a time) and return the HTTP status; raising counts as an error.
Exchange = Callable[[int, bytes], Awaitable[int]]


def arrival_offsets(
    rate: float, count: int, arrivals: Arrivals = "poisson", seed: int = 0
) -> npt.NDArray[np.float64]:
    """Send times in seconds from the start of ``count`` requests arriving at ``rate`` per second.

    Poisson arrivals have independent exponential gaps of mean ``1 / rate`` (seeded); uniform
    ones are exactly ``1 / rate`` apart. The first request goes out at 0.
    """
    if rate <= 0 or count < 0:
        raise InvalidInputError(
            f"rate={rate}, count={count} are not allowed; use rate > 0 and count >= 0"
        )
    if arrivals not in ("poisson", "uniform"):
        raise InvalidInputError(f"arrivals={arrivals!r} is not one of 'poisson', 'uniform'")
    if count == 0:
        return np.empty(0, np.float64)
    if arrivals == "uniform":
        return np.arange(count, dtype=np.float64) / rate
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, count)
    gaps[0] = 0.0
    return np.cumsum(gaps)


@dataclass
class OpenLoopRun:
    """What one open-loop run measured (seconds).

    Attributes:
        latencies: per successful request, answer time minus *scheduled* time.
        service: per successful request, answer time minus the time it went out (excludes
            waiting for a free connection).
        lags: per request, how late the load generator itself dispatched it (its own delay).
        errors: non-200 answers and failed exchanges.
        wall: first scheduled send to last answer.
    """

    latencies: list[float] = field(default_factory=list)
    service: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    errors: int = 0
    wall: float = 0.0


async def run_open_loop(
    requests: Sequence[bytes],
    offsets: npt.NDArray[np.float64],
    slots: int,
    exchange: Exchange,
    clock: Callable[[], float] = time.perf_counter,
) -> OpenLoopRun:
    """Send ``requests[i]`` at ``offsets[i]`` seconds from now over ``slots`` connections.

    A request due while every connection is busy waits for the first one freed (in arrival
    order); that wait is part of its latency.
    """
    if slots < 1:
        raise InvalidInputError(f"slots={slots} is not allowed; use slots >= 1")
    if len(requests) != len(offsets):
        raise InvalidInputError(
            f"{len(requests)} requests but {len(offsets)} send times; give one time per request"
        )
    run = OpenLoopRun()
    free: asyncio.Queue[int] = asyncio.Queue()
    for slot in range(slots):
        free.put_nowait(slot)
    start = clock()
    last_done = start

    async def one(request: bytes, due: float) -> None:
        nonlocal last_done
        slot = await free.get()
        sent = clock()
        try:
            status = await exchange(slot, request)
        except Exception:  # a failed exchange is an error of this request, not of the run
            status = 0
        finally:
            free.put_nowait(slot)
        done = clock()
        last_done = max(last_done, done)
        if status == 200:
            run.latencies.append(done - due)
            run.service.append(done - sent)
        else:
            run.errors += 1

    tasks: list[asyncio.Task[None]] = []
    for request, offset in zip(requests, offsets.tolist(), strict=True):
        due = start + offset
        wait = due - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        run.lags.append(max(0.0, clock() - due))
        tasks.append(asyncio.create_task(one(request, due)))
    await asyncio.gather(*tasks)
    run.wall = last_done - start
    return run


async def _run_open(
    port: int, requests: Sequence[bytes], offsets: npt.NDArray[np.float64], slots: int
) -> tuple[OpenLoopRun, float]:
    """The run over ``slots`` connections to the server (opened first) and this process's CPU
    seconds."""
    connections = await connect_all(port, slots)

    async def send(slot: int, request: bytes) -> int:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                connection = connections[slot]
                if connection is None:
                    connection = connections[slot] = await asyncio.open_connection(HOST, port)
                status, keep_alive = await exchange(*connection, request)
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
        run = await run_open_loop(requests, offsets, slots, send)
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
        **percentiles_ms(run.latencies),
        "mean_ms": float(lat.mean()) if ok else None,
        "max_ms": float(lat.max()) if ok else None,
        **percentiles_ms(run.service, "service_"),
        "client_lag_p99_ms": float(np.percentile(np.asarray(run.lags) * 1000, 99))
        if run.lags
        else None,
        "client_cpu_share": cpu / wall,
        "client_cpu_ms_per_request": 1000 * cpu / len(requests) if requests else None,
    }
