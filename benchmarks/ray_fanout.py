"""What a fan-out to S Ray actors costs by itself (issue 19): the round trip of a call that
does nothing to every actor, as ordinary actor calls (what ``serve --shards`` uses) and through
a Ray compiled graph, and the CPU the actors burn while idle in each case.

    python benchmarks/ray_fanout.py --report ray-fanout.json [--shards 2,4] [--calls 500]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import psutil

from shopsearch.bench.timing import percentiles_ms
from shopsearch.ray_cluster import connect, ray_module
from shopsearch.store.atomic import write_json


class Echo:
    """An actor that answers with what it is given."""

    def echo(self, value: object) -> object:
        return value

    def pid(self) -> int:
        return os.getpid()


def idle_cpu_s(pids: list[int], seconds: float = 3.0) -> float:
    """CPU seconds per second the processes use over ``seconds`` of doing nothing."""
    procs = [psutil.Process(pid) for pid in pids]
    before = [sum(p.cpu_times()[:2]) for p in procs]
    time.sleep(seconds)
    after = [sum(p.cpu_times()[:2]) for p in procs]
    return sum(b - a for a, b in zip(before, after, strict=True)) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--shards", default="2,4")
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args()
    connect(None, 2)
    ray = ray_module()
    from ray.dag import InputNode, MultiOutputNode

    report: dict[str, Any] = {"calls": args.calls}
    payload = ("grey sofa", 100, None, None)
    for shards in [int(s) for s in args.shards.split(",")]:
        actors = [ray.remote(num_cpus=0, max_concurrency=2)(Echo).remote() for _ in range(shards)]
        pids = ray.get([a.pid.remote() for a in actors])
        row: dict[str, Any] = {"idle_cpu_plain": idle_cpu_s(pids)}
        seconds = []
        for _ in range(args.calls):
            start = time.perf_counter()
            ray.get([a.echo.remote(payload) for a in actors])
            seconds.append(time.perf_counter() - start)
        row["plain"] = percentiles_ms(seconds)
        with InputNode() as query:
            dag = MultiOutputNode([a.echo.bind(query) for a in actors])
        compiled = dag.experimental_compile()
        seconds = []
        try:
            ray.get(compiled.execute(payload))
            for _ in range(args.calls):
                start = time.perf_counter()
                ray.get(compiled.execute(payload))
                seconds.append(time.perf_counter() - start)
            row["compiled"] = percentiles_ms(seconds)
            row["idle_cpu_compiled"] = idle_cpu_s(pids)
        except ray.exceptions.RayChannelTimeoutError as exc:  # spinning actors starve each other
            row["compiled"] = f"timed out after {len(seconds)} calls: {type(exc).__name__}"
        compiled.teardown()
        for actor in actors:
            ray.kill(actor)
        report[f"S{shards}"] = row
        print(shards, row, flush=True)
    write_json(args.report, report)


if __name__ == "__main__":
    main()
