"""Sharded lexical search (issue 19): on a workspace's catalog, every distinct logged query is
searched by one index and by S = 2, 4 shards (in process, then as Ray actors on a local
cluster), and the answers are compared; the report gives the identity counts, the latency of
each (p50/p99), the added latency of fan-out and merge, and the per-shard costs the
internet-scale projection in RESULTS.md starts from (index bytes per product, ghost bytes per
catalog product, search CPU per query per shard, merge time by shard count).

    python benchmarks/shard_search.py -w WORKSPACE --report shards.json [--queries N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shopsearch.bench.timing import percentiles_ms
from shopsearch.ray_cluster import connect
from shopsearch.retrieval.base import Hits
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.retrieval.lexical_query import price_bucket_labels
from shopsearch.retrieval.lexical_shards import (
    TIE_RTOL,
    ShardedLexical,
    build_local_shards,
    catalog_positions,
    merge_hits,
)
from shopsearch.serve.shards import ShardPlan, start_shards
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace

K = 100


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def compare(one: Sequence[Hits], other: Sequence[Hits]) -> dict[str, int]:
    """How many answers are identical (same keys in order), identical up to ties (scores
    within TIE_RTOL, keys equal as sets within each tied run), and with equal totals/facets."""
    strict = tied = totals = facets = 0
    for a, b in zip(one, other, strict=True):
        ka, kb = a.candidates.keys, b.candidates.keys
        strict += ka == kb
        sa, sb = a.candidates.scores.astype(float), b.candidates.scores.astype(float)
        same = len(ka) == len(kb) and bool(np.allclose(sa, sb, rtol=TIE_RTOL, atol=0))
        i = 0
        while same and i < len(ka):
            j = i
            while j < len(ka) and abs(sa[j] - sa[i]) <= TIE_RTOL * abs(sa[i]):
                j += 1
            same = j == len(ka) or set(ka[i:j]) == set(kb[i:j])  # a run cut at k may differ
            i = j
        tied += same
        totals += a.candidates.total == b.candidates.total
        facets += a.facets == b.facets
    return {"queries": len(one), "identical": strict, "identical_up_to_ties": tied,
            "same_total": totals, "same_facets": facets}  # fmt: skip


def timed(search: Callable[[str], Hits], queries: Sequence[str]) -> tuple[list[Hits], list[float]]:
    answers, seconds = [], []
    for query in queries:
        start = time.perf_counter()
        answers.append(search(query))
        seconds.append(time.perf_counter() - start)
    return answers, seconds


def measure(
    products: Any,
    queries: Sequence[str],
    shards: int,
    single: LexicalRetriever,
    reference: Sequence[Hits],
) -> dict[str, Any]:
    """Identity, latency and costs of ``shards`` shards, in process and on Ray."""
    positions = catalog_positions(products)
    row: dict[str, Any] = {}
    start = time.perf_counter()
    local = build_local_shards(products, shards)
    row["local_build_s"] = time.perf_counter() - start
    sizes = np.array([len(member) for member in local.members])
    with tempfile.TemporaryDirectory(prefix="shopsearch-shard-bench-") as tmp:
        member_bytes = []
        for i, member in enumerate(local.members):
            LexicalRetriever.save(member, Path(tmp) / str(i))  # its files, ghosts included
            member_bytes.append(folder_bytes(Path(tmp) / str(i)))
    with tempfile.TemporaryDirectory(prefix="shopsearch-shard-bench-") as tmp:
        own_bytes = []  # the same products without ghosts
        for i, member in enumerate(local.members):
            alone = LexicalRetriever(Path(tmp) / str(i)).index(
                products.take([positions[key] for key in member.rows_])
            )
            own_bytes.append(folder_bytes(Path(tmp) / str(i)))
            del alone
    ghosts = len(positions) - sizes
    row["shard_products"] = sizes.tolist()
    row["shard_bytes"] = member_bytes
    row["shard_bytes_without_ghosts"] = own_bytes
    row["ghost_bytes_per_ghost"] = float(
        (np.array(member_bytes) - np.array(own_bytes)).sum() / max(int(ghosts.sum()), 1)
    )
    first = local.members[0]  # search CPU per query in one shard (in process, one thread)
    row["one_shard_latency_ms"] = percentiles_ms(timed(lambda q: first.search(q, K), queries)[1])
    in_process = ShardedLexical(local, positions)
    answers, seconds = timed(lambda q: in_process.search(q, K), queries)
    row["local"] = {"latency_ms": percentiles_ms(seconds), **compare(reference, answers)}
    parts = [member.search(queries[0], K) for member in local.members]
    labels = price_bucket_labels(single.price_buckets)
    merge_s = []
    for _ in range(200):
        start = time.perf_counter()
        merge_hits(parts, K, positions, single.facet_size, labels)
        merge_s.append(time.perf_counter() - start)
    row["merge_ms"] = percentiles_ms(merge_s)
    start = time.perf_counter()
    remote = start_shards(products, ShardPlan(shards=shards, replicas=1))
    row["ray_start_s"] = time.perf_counter() - start
    sharded = ShardedLexical(remote, positions)
    sharded.search(queries[0], K)
    answers, seconds = timed(lambda q: sharded.search(q, K), queries)
    row["ray"] = {"latency_ms": percentiles_ms(seconds), **compare(reference, answers)}
    import ray

    rtt = []  # the fan-out alone: a call to every shard that does nothing
    for _ in range(500):
        start = time.perf_counter()
        ray.get([replicas[0].size.remote() for replicas in remote.actors])
        rtt.append(time.perf_counter() - start)
    row["ray_round_trip_ms"] = percentiles_ms(rtt)
    remote.stop()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=0, help="first N distinct queries (0: all)")
    parser.add_argument("--shards", default="2,4")
    args = parser.parse_args()
    ws = Workspace.open(args.workspace)
    products = ws.table("products")
    queries = list(dict.fromkeys(ws.table("requests", ["query"]).column("query").to_pylist()))
    queries = queries[: args.queries] if args.queries else queries
    positions = catalog_positions(products)
    report: dict[str, Any] = {"products": len(positions), "queries": len(queries), "k": K}
    with tempfile.TemporaryDirectory(prefix="shopsearch-shard-bench-") as tmp:
        start = time.perf_counter()
        single = LexicalRetriever(Path(tmp) / "one").index(products)
        size = folder_bytes(Path(tmp) / "one") / len(single)
        report["single"] = {"build_s": time.perf_counter() - start, "bytes_per_product": size}
    single.search(queries[0], K)
    reference, seconds = timed(lambda q: single.search(q, K), queries)
    report["single"]["latency_ms"] = percentiles_ms(seconds)
    print("single", report["single"])
    connect(None, 2)
    for shards in [int(s) for s in args.shards.split(",")]:
        report[f"S{shards}"] = measure(products, queries, shards, single, reference)
        print(shards, report[f"S{shards}"])
    write_json(args.report, report)


if __name__ == "__main__":
    main()
