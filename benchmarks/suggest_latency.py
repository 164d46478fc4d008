"""How fast ``GET /suggest`` answers: p50/p99 over HTTP, one request at a time.

    shopsearch train --stage query --workspace W     # a bundle with a suggester
    python benchmarks/suggest_latency.py --workspace W --requests 5000

Starts ``shopsearch serve`` on 127.0.0.1 (one worker) over the workspace, then asks for the
completions of prefixes of logged queries (a seeded sample: each query cut at a random length,
in its market) over one keep-alive connection, and prints the client-side latency (request
written to answer read, loopback HTTP included) and the share of answers with suggestions.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np

from shopsearch.bench.http_client import HOST
from shopsearch.bench.server import running_server
from shopsearch.store.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    workspace = Workspace.open(args.workspace)
    logged = workspace.connect().execute("SELECT domain, query FROM requests").fetchall()
    if not logged:
        print(f"{args.workspace} has no logged searches", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    paths = []
    for domain, query in rng.choices(logged, k=args.warmup + args.requests):
        prefix = query[: rng.randint(1, max(1, len(query)))]
        paths.append(f"/suggest?{urlencode({'q': prefix, 'domain': domain, 'size': 8})}")
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(workspace.root, 1, Path(tmp) / "server.log") as port,
    ):
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        seconds, answered = [], 0
        for i, path in enumerate(paths):
            start = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            elapsed = time.perf_counter() - start
            if response.status != 200:
                print(f"{path} answered {response.status}: {body[:200]!r}", file=sys.stderr)
                return 1
            if i >= args.warmup:
                seconds.append(elapsed)
                answered += bool(json.loads(body)["suggestions"])
        connection.close()
    ms = 1000 * np.array(seconds)
    print(
        f"GET /suggest x{len(ms)}: p50 {np.percentile(ms, 50):.2f} ms  p90 "
        f"{np.percentile(ms, 90):.2f} ms  p99 {np.percentile(ms, 99):.2f} ms  max {ms.max():.2f} "
        f"ms  ({answered / len(ms):.0%} with suggestions)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
