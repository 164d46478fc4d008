"""What one lexical shard costs per search as it grows (issue 19's projection): an index over
the workspace's first n products for n = N/4, N/2, N, and the mean and median time of a served
search (top 100 with the exact total and facet counts) and of a bare top 100 (no count, no
facets, which lets tantivy skip blocks) over the first distinct logged queries.

    python benchmarks/shard_cost.py -w WORKSPACE --report shard-cost.json [--queries 3000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=3000)
    args = parser.parse_args()
    ws = Workspace.open(args.workspace)
    products = ws.table("products")
    logged = ws.table("requests", ["query"]).column("query").to_pylist()
    queries = list(dict.fromkeys(logged))[: args.queries]
    report: dict[str, object] = {"queries": len(queries)}
    for n in (products.num_rows // 4, products.num_rows // 2, products.num_rows):
        lexical = LexicalRetriever().index(products.slice(0, n))
        searcher = lexical.home_.searcher()
        served, bare = [], []
        for query in queries:
            start = time.perf_counter()
            lexical.search(query, 100)
            served.append(time.perf_counter() - start)
            built = lexical._query(query, None)
            start = time.perf_counter()
            searcher.search(built, 100, count=False)
            bare.append(time.perf_counter() - start)
        report[str(n)] = {
            "served_mean_ms": 1000 * float(np.mean(served)),
            "served_p50_ms": 1000 * float(np.median(served)),
            "top100_only_mean_ms": 1000 * float(np.mean(bare)),
            "top100_only_p50_ms": 1000 * float(np.median(bare)),
        }
        print(n, report[str(n)], flush=True)
    write_json(args.report, report)


if __name__ == "__main__":
    main()
