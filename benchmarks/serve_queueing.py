"""How much of the serving tail is queueing alone (issue 20).

Replays the logged query stream of ``shopsearch bench serve`` (same sampling, same seed, the
workspace's default caches) through ``Engine.search`` in process on one compute thread, with
the heap frozen as a server worker freezes it (after the load and every ``freeze_every_s``),
and keeps each search's CPU time: the service-time distribution of the server's workers,
without HTTP. Then it simulates the open loop the benchmark offers: Poisson arrivals at each
``--rate``, each request served first come first served by one of ``--workers``
single-threaded workers, taking its engine CPU plus the server's own CPU per request beyond
the engine (``--server-cpu-ms``, a ``bench serve`` level's ``server_cpu_ms_per_request``, minus
the replay's mean):

- *connections*: a request goes to a worker at random (each keep-alive connection stays on
  the worker that accepted it, so with many connections a request's worker is a coin toss);
- *shared queue*: a request goes to the first free worker (what a balancer in front does).

Nothing else slows the simulated server: no garbage collection, compaction, log writes or
other programs on the cores, so a measured tail above the simulated one has other causes, and
one near it is queueing. ``--target-ms`` also reports the largest fraction of today's CPU per
request at which each rate's simulated p99 meets that target.

    python benchmarks/serve_queueing.py -w W --server-cpu-ms 4.1 --rate 300,500 \\
        --target-ms 25,100 --report queueing.json
"""

from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shopsearch.bench.retrieval import bench_queries
from shopsearch.config import load_settings
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.serve.heap import freeze_new, settle_heap
from shopsearch.serve.threads import compute_threads_limited
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace

F64 = npt.NDArray[np.float64]
WARMUP = 20
PAGE_SIZE = 24


def service_ms(workspace: Workspace, queries: int, seed: int) -> F64:
    """CPU milliseconds of each of ``queries`` logged searches in process (default caches)."""
    settings = load_settings(workspace.root)
    stream = bench_queries(workspace, workspace.table("products"), WARMUP + queries, seed)
    spent: list[float] = []
    with compute_threads_limited(settings.serve.compute_threads):
        engine = Engine.load(workspace, settings)
        domain = engine.resolve_domain(None)
        for query in stream[:WARMUP]:
            engine.search(SearchParams(query, domain, size=PAGE_SIZE))
        settle_heap()
        frozen = time.monotonic()
        try:
            for query in stream[WARMUP:]:
                start = time.process_time()
                engine.search(SearchParams(query, domain, size=PAGE_SIZE))
                spent.append(1000 * (time.process_time() - start))
                if time.monotonic() - frozen > settings.serve.freeze_every_s:
                    freeze_new()
                    frozen = time.monotonic()
        finally:
            gc.unfreeze()
    return np.asarray(spent)


def simulate(
    service: F64, rate: float, workers: int, shared: bool, requests: int, seed: int
) -> F64:
    """Response times (ms) of ``requests`` Poisson arrivals at ``rate`` per second served by
    ``workers`` FIFO workers, each request's service drawn from ``service``."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1000.0 / rate, requests))
    needs = rng.choice(service, requests)
    chosen = rng.integers(0, workers, requests)
    free = np.zeros(workers)
    out = np.empty(requests)
    for i in range(requests):
        w = int(free.argmin()) if shared else int(chosen[i])
        done = max(arrivals[i], free[w]) + needs[i]
        free[w] = done
        out[i] = done - arrivals[i]
    return out


def _percentiles(values: F64) -> dict[str, float]:
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def needed_scale(
    service: F64, rate: float, workers: int, target_ms: float, requests: int, seed: int
) -> float | None:
    """The largest multiple of ``service`` (in steps of 0.05) whose simulated p99 at ``rate``
    (connections model) is at most ``target_ms``; ``None`` if even 0.05 misses it."""
    for scale in np.arange(1.0, 0.0, -0.05):
        times = simulate(service * scale, rate, workers, False, requests, seed)
        if float(np.percentile(times, 99)) <= target_ms:
            return float(round(scale, 2))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=19_500)
    parser.add_argument("--server-cpu-ms", type=float, required=True)
    parser.add_argument("--rate", default="300,500")
    parser.add_argument("--target-ms", default="25,100")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rates = [float(r) for r in args.rate.split(",")]
    targets = [float(t) for t in args.target_ms.split(",")]
    engine = service_ms(Workspace.open(args.workspace), args.queries, args.seed)
    server_ms = max(args.server_cpu_ms - float(engine.mean()), 0.0)
    service = engine + server_ms
    levels = {}
    for rate, target in zip(rates, targets, strict=True):
        sim = {
            how: _percentiles(
                simulate(service, rate, args.workers, how == "shared", args.requests, args.seed)
            )
            for how in ("connections", "shared")
        }
        scale = needed_scale(service, rate, args.workers, target, args.requests // 2, args.seed)
        levels[f"rate-{rate:g}"] = {
            **sim,
            "utilisation": rate * float(service.mean()) / 1000 / args.workers,
            "target_p99_ms": target,
            "scale_meeting_target": scale,
            "cpu_ms_meeting_target": None if scale is None else scale * float(service.mean()),
        }
    report = {
        "workspace": str(args.workspace),
        "searches": len(engine),
        "engine_cpu_ms": {**_percentiles(engine), "mean_ms": float(engine.mean())},
        "server_cpu_ms": args.server_cpu_ms,
        "server_beyond_engine_ms": server_ms,
        "service_mean_ms": float(service.mean()),
        "workers": args.workers,
        "levels": levels,
        "load_average": os.getloadavg(),
    }
    write_json(args.report, report)
    print(report)


if __name__ == "__main__":
    main()
