"""The open-loop load generator: arrival schedules and latency from the scheduled time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from shopsearch.bench.open_loop import OpenLoopRun, arrival_offsets, run_open_loop
from shopsearch.errors import InvalidInputError


def test_uniform_arrivals_are_evenly_spaced() -> None:
    np.testing.assert_allclose(arrival_offsets(4.0, 5, "uniform"), [0, 0.25, 0.5, 0.75, 1.0])
    assert arrival_offsets(10.0, 0).size == 0


def test_poisson_arrivals_are_seeded_increasing_and_at_the_rate() -> None:
    a = arrival_offsets(300.0, 20_000, "poisson", seed=3)
    assert a[0] == 0
    assert np.all(np.diff(a) >= 0)
    np.testing.assert_array_equal(a, arrival_offsets(300.0, 20_000, "poisson", seed=3))
    assert not np.array_equal(a, arrival_offsets(300.0, 20_000, "poisson", seed=4))
    gaps = np.diff(a)
    assert gaps.mean() == pytest.approx(1 / 300, rel=0.03)
    assert gaps.std() == pytest.approx(1 / 300, rel=0.05)  # exponential: std = mean


@pytest.mark.parametrize(
    ("rate", "count", "arrivals"), [(0.0, 5, "poisson"), (5.0, -1, "uniform"), (5.0, 5, "x")]
)
def test_bad_schedules_fail_clearly(rate: float, count: int, arrivals: str) -> None:
    with pytest.raises(InvalidInputError):
        arrival_offsets(rate, count, arrivals)  # type: ignore[arg-type]


def test_latency_counts_from_the_schedule_so_queueing_is_not_omitted() -> None:
    """One connection; the first answer is held until every request is due. A generator that
    timed from the send (coordinated omission) would report ~0 for all but the first."""
    n = 20
    offsets = arrival_offsets(1000.0, n, "uniform")  # 19 ms from first to last
    release = asyncio.Event()
    sent: list[int] = []

    async def main() -> OpenLoopRun:
        async def exchange(slot: int, request: bytes) -> int:
            assert slot == 0
            sent.append(int(request))
            if int(request) == 0:
                await release.wait()
            return 200

        async def releaser() -> None:
            await asyncio.sleep(float(offsets[-1]) + 0.005)
            release.set()

        task = asyncio.create_task(releaser())
        run = await run_open_loop([str(i).encode() for i in range(n)], offsets, 1, exchange)
        await task
        return run

    run = asyncio.run(main())
    assert sent == list(range(n))  # FIFO on the one connection
    latencies = np.asarray(run.latencies)
    assert len(latencies) == n
    assert run.errors == 0
    # every request waited at least until the release, which came after the last was due
    assert np.all(latencies >= offsets[-1] - offsets)
    service = np.asarray(run.service)
    assert latencies[0] >= float(offsets[-1])
    assert np.all(service <= latencies + 1e-9)


def test_slots_bound_requests_in_flight_and_errors_are_counted() -> None:
    in_flight = 0
    most = 0

    async def exchange(slot: int, request: bytes) -> int:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.002)
        in_flight -= 1
        if request == b"bad":
            raise ConnectionError("reset")
        return 503 if request == b"busy" else 200

    requests = [b"ok"] * 10 + [b"bad", b"busy"]
    offsets = np.zeros(len(requests))  # all due at once
    run = asyncio.run(run_open_loop(requests, offsets, 3, exchange))
    assert most == 3
    assert len(run.latencies) == 10
    assert run.errors == 2
    assert len(run.lags) == len(requests)
    with pytest.raises(InvalidInputError, match="slots"):
        asyncio.run(run_open_loop(requests, offsets, 0, exchange))
    with pytest.raises(InvalidInputError, match="send times"):
        asyncio.run(run_open_loop(requests, offsets[:2], 1, exchange))
