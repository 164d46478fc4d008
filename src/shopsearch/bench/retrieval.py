"""``shopsearch bench retrieval``: indexing throughput and one-at-a-time query latency.

Systems, all on the workspace's products in one run:

* ``shopsearch/lexical`` — :class:`LexicalRetriever` (multi-field BM25, fuzzy, top 100);
* ``shopsearch/dense`` — :class:`DenseRetriever` (MiniLM query encoding + faiss, top 100);
* ``shopsearch/hybrid`` — both, fused (top 100);
* ``shopsearch/engine`` — a full ``Engine.search`` (hybrid + facets + a page of 10);
* ``baseline/tantivy`` — raw tantivy as a user would set it up: titles, its query parser;
* ``baseline/tantivy-same-query`` — raw tantivy on the lexical retriever's own index with the
  same fields, boosts and fuzzy fields through tantivy's query parser, so the ratio to
  ``shopsearch/lexical`` is the wrapper's own overhead;
* ``baseline/bm25s`` — bm25s (numba) over titles.

Queries are distinct logged query texts (sampled with a seed; the dense query-vector cache is
cleared before each system, so every query is encoded cold) or, with no logs, two or three words
of random product titles. ``shopsearch/hybrid@logged-mix`` replays queries drawn with their logged
frequencies instead, where repeated head queries hit the query-vector cache. When the
workspace's current bundle has query models (``shopsearch train --stage query``),
``shopsearch/engine+query@logged-mix`` runs the engine with that query stage on the logged mix,
and reports the query stage's own time (``query_stage_p50_ms`` / ``query_stage_p99_ms``).
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shopsearch.bench.timing import measure, timed
from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stage import Stage
from shopsearch.pipeline.stages.query import QUERY_DIR, QueryStage
from shopsearch.progress import Say
from shopsearch.query.models import QueryModels
from shopsearch.retrieval.bm25s_baseline import BM25sBaseline
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.retrieval.raw_baselines import RawTantivyRetriever
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.text.encoders import MiniLMEncoder


def bench_queries(
    workspace: Workspace, products: pa.Table, n: int, seed: int, distinct: bool = False
) -> list[str]:
    """``n`` query texts: logged ones if the workspace has any, else words of product titles.

    Logged queries are drawn with their logged frequencies (head queries repeat, as in real
    traffic); with ``distinct`` every query differs.
    """
    rng = random.Random(seed)
    logged = [q for q in workspace.table("requests", ["query"])["query"].to_pylist() if q]
    if logged and distinct:
        unique = sorted(set(logged))
        rng.shuffle(unique)
        return unique[:n]
    if logged:
        return [rng.choice(logged) for _ in range(n)]
    titles = products["title"].to_pylist()
    queries = []
    for _ in range(n):
        words = rng.choice(titles).split()
        size = min(len(words), rng.choice((2, 3)))
        start = rng.randrange(0, len(words) - size + 1)
        queries.append(" ".join(words[start : start + size]))
    return queries


def _raw_same_query(lexical: LexicalRetriever) -> Callable[[str], object]:
    index = lexical.home_.index
    fields = list(lexical.field_boosts)
    fuzzy = {f: (True, 1, True) for f in lexical.fuzzy_fields}

    def run(query: str) -> object:
        parsed, _ = index.parse_query_lenient(
            query, fields, field_boosts=lexical.field_boosts, fuzzy_fields=fuzzy
        )
        searcher = index.searcher()
        hits = searcher.search(parsed, limit=100).hits
        return searcher.fast_field_values("row", [a for _, a in hits])

    return run


def _query_stage(workspace: Workspace) -> dict[str, Stage] | None:
    """The current bundle's query stage, when it has query models."""
    try:
        folder = current_bundle(workspace) / QUERY_DIR
    except WorkspaceError:
        return None
    return {"query": QueryStage(QueryModels.load(folder))} if folder.is_dir() else None


def run_retrieval_bench(
    workspace: Workspace,
    settings: Settings,
    n_queries: int = 1000,
    seed: int = 0,
    say: Say = print,
) -> dict[str, Any]:
    """Index every system, time ``n_queries`` one-at-a-time searches each, return the report."""
    products = workspace.table("products")
    if products.num_rows == 0:
        raise InvalidInputError(f"workspace {workspace.root} has no products to index")
    queries = bench_queries(workspace, products, n_queries, seed, distinct=True)
    logged_mix = bench_queries(workspace, products, n_queries, seed + 1)
    n = products.num_rows
    systems: dict[str, dict[str, float]] = {}
    cache = workspace.dir("cache") / "embeddings"

    with tempfile.TemporaryDirectory() as tmp:
        say(f"indexing {n} products")
        lexical, t_lex = timed(lambda: LexicalRetriever(Path(tmp) / "lex").index(products))
        raw, t_raw = timed(lambda: RawTantivyRetriever(Path(tmp) / "raw").index(products))
        bm25, t_bm25 = timed(lambda: BM25sBaseline().index(products))
        encoder = MiniLMEncoder()
        dense, t_dense = timed(
            lambda: DenseRetriever(
                encoder, cache, hnsw_threshold=settings.retrieval.hnsw_threshold
            ).index(products)
        )
        sample = products["title"].to_pylist()[: min(512, n)]
        _, t_encode = timed(lambda: encoder.encode_items([f"{t} ·bench" for t in sample]))
        dense.fit_matches()  # as shopsearch index does: no timed search pays for it
        hybrid = HybridRetriever({"lexical": lexical, "dense": dense}, per_source_k=100)

        say("timing queries one at a time")
        runs: dict[str, tuple[Callable[[str], object], float]] = {
            "baseline/tantivy": (lambda q: raw.retrieve(q, 100), t_raw),
            "baseline/tantivy-same-query": (_raw_same_query(lexical), t_lex),
            "baseline/bm25s": (lambda q: bm25.retrieve(q, 100), t_bm25),
            "shopsearch/lexical": (lambda q: lexical.retrieve(q, 100), t_lex),
            "shopsearch/dense": (lambda q: dense.retrieve(q, 100), t_dense),
            "shopsearch/hybrid": (lambda q: hybrid.retrieve(q, 100), t_lex + t_dense),
        }
        for name, (call, seconds) in runs.items():
            dense.clear_query_cache()
            systems[name] = {**measure(call, queries), "index_per_s": n / seconds}
            say(f"{name}: {systems[name]['qps']:.0f} q/s, p99 {systems[name]['p99_ms']:.2f} ms")
        engine = Engine(hybrid, ProductLookup(products), settings)
        engine.responses.resize(0)  # time the pipeline, not answers repeated from memory
        dense.clear_query_cache()
        systems["shopsearch/engine"] = {
            **measure(lambda q: engine.search(SearchParams(q)), queries),
            "index_per_s": n / (t_lex + t_dense),
        }
        query_stage = _query_stage(workspace)
        if query_stage is not None:  # the bundle's query understanding, on the logged mix
            understood = Engine(hybrid, ProductLookup(products), settings, stages=query_stage)
            understood.responses.resize(0)
            stage_ms: list[float] = []

            def search(q: str) -> object:
                response = understood.search(SearchParams(q))
                stage_ms.append(response.timings_ms["query"])
                return response

            dense.clear_query_cache()
            systems["shopsearch/engine+query@logged-mix"] = {
                **measure(search, logged_mix),
                "index_per_s": n / (t_lex + t_dense),
                "query_stage_p50_ms": float(np.percentile(stage_ms, 50)),
                "query_stage_p99_ms": float(np.percentile(stage_ms, 99)),
            }
        # The logged query mix: head queries repeat, so the query-vector cache is hit.
        dense.clear_query_cache()
        systems["shopsearch/hybrid@logged-mix"] = {
            **measure(lambda q: hybrid.retrieve(q, 100), logged_mix),
            "index_per_s": n / (t_lex + t_dense),
        }
    lex, raw_qps = systems["shopsearch/lexical"]["qps"], systems["baseline/tantivy"]["qps"]
    same = systems["baseline/tantivy-same-query"]["qps"]
    return {
        "suite": "bench/retrieval",
        "dataset": {"products": n, "queries": len(queries), "distinct_queries": len(set(queries))},
        "systems": systems,
        "ratios": {
            "lexical_qps_over_raw_tantivy": lex / raw_qps,
            "lexical_qps_over_raw_tantivy_same_query": lex / same,
            "hybrid_p99_ms": systems["shopsearch/hybrid"]["p99_ms"],
            "hybrid_logged_mix_p99_ms": systems["shopsearch/hybrid@logged-mix"]["p99_ms"],
        },
        "dense_item_encode_per_s": len(sample) / t_encode,
        "config": {"seed": seed, "k": 100, "hnsw_threshold": settings.retrieval.hnsw_threshold},
    }
