"""Catalog encoding on Ray (issue 19): MiniLM over the Home Depot product titles with 1 and
with 2 Ray workers on a local cluster, each into a fresh embedding cache; throughput and the
ratio (target: >= 1.6x with 2 workers on this 2-core machine).

    python benchmarks/ray_encode.py --train hd-train.csv --report ray-encode.json [--limit N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from shopsearch.evaluate.suites.judged import catalog_table, read_judged
from shopsearch.ray_cluster import connect
from shopsearch.store.atomic import write_json
from shopsearch.text.encoders import MiniLMEncoder
from shopsearch.training.distributed import encode_catalog


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=0, help="first N titles only (0: all)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    titles = catalog_table([read_judged("homedepot", [args.train], None).products])
    texts = sorted(set(titles.column("title").to_pylist()))
    if args.limit:
        texts = texts[: args.limit]
    connect(None, 2)
    encoder = MiniLMEncoder()
    runs: dict[str, dict[str, float]] = {}
    results = []
    for workers in (1, 2):
        with tempfile.TemporaryDirectory(prefix="shopsearch-ray-bench-") as tmp:
            start = time.perf_counter()
            vectors = encode_catalog(texts, encoder, Path(tmp), workers=workers)
            seconds = time.perf_counter() - start
        results.append(vectors)
        runs[str(workers)] = {"seconds": seconds, "texts_per_s": len(texts) / seconds}
        print(workers, runs[str(workers)])
    report = {
        "texts": len(texts),
        "runs": runs,
        "speedup_2_over_1": runs["2"]["texts_per_s"] / runs["1"]["texts_per_s"],
        "max_abs_difference": float(np.abs(results[0] - results[1]).max()),
        "cpu": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    write_json(args.report, report)
    print(report)


if __name__ == "__main__":
    main()
