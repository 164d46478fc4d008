"""How much of an uncached search's CPU is spent inside the native libraries (issue 20).

Runs logged queries of a workspace (the sampling of ``shopsearch bench stages``) through
``Engine.search`` in process on one compute thread with the query, result and response caches
off, as ``bench stages`` does, and times every call into the native libraries the pipeline
uses, on the calling thread's CPU clock:

- tantivy: the top-``k`` searches (the lexical list and the fusion's matching query), the
  facet aggregations and the reads of the ``row`` fast field, each by the retriever method
  that made it (``search``, ``matching_keys``, ``facets_of``);
- faiss: the HNSW and exact searches (with their parameter set-up, a few Python lines);
- ONNX Runtime: the ranking model's session runs;
- the tokenizer (Rust ``tokenizers``) of the static query encoder.

What is left is Python (the pipeline's orchestration, features, fusion) and smaller native
work it drives: numpy and torch arrays, building tantivy's query objects, pyarrow. So the timed
calls are a lower bound on the native work, and they bound how low the CPU of an uncached
search can go while the pipeline keeps every stage it has, whatever the Python costs.

    python benchmarks/native_floor.py -w W --queries 1000 --rounds 3 --report native.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from shopsearch.bench.retrieval import bench_queries
from shopsearch.bench.stages import PAGE_SIZE, WARMUP, _settings_env
from shopsearch.config import load_settings
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.ranking import onnx_scorer
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.lexical_store import IndexHome
from shopsearch.serve.threads import compute_threads_limited
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace
from shopsearch.text.static_encoder import Model2VecEncoder

spent: Counter[str] = Counter()


def _timed(name: str, call: Callable[..., Any], by_caller: bool = False) -> Callable[..., Any]:
    """``call`` with its thread CPU added to ``spent[name]`` (``by_caller``: to
    ``spent[f"{name} (in <the function that called its caller>)"]``)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        label = f"{name} (in {sys._getframe(2).f_code.co_name})" if by_caller else name
        start = time.thread_time()
        try:
            return call(*args, **kwargs)
        finally:
            spent[label] += time.thread_time() - start

    return run


class _Timed:
    """``target`` with the named methods timed under ``label: method``; the rest passed on."""

    def __init__(
        self, target: Any, label: str, methods: tuple[str, ...], by_caller: bool = False
    ) -> None:
        self._target = target
        for method in methods:
            timed = _timed(f"{label} {method}", getattr(target, method), by_caller)
            setattr(self, method, timed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


@contextmanager
def native_calls_timed() -> Iterator[None]:
    """Time the native calls of every engine loaded inside the block (see the module).

    The classes and the module are restored at its end; sessions and tokenizers made inside
    it keep their timing wrappers (this script uses them only inside it)."""
    searcher, session = IndexHome.searcher, onnx_scorer._session
    hnsw, exact, load = DenseRetriever._hnsw, DenseRetriever._exact, Model2VecEncoder._load
    tantivy_calls = ("search", "aggregate", "fast_field_values")

    def load_timed(self: Model2VecEncoder) -> None:
        load(self)
        if not isinstance(self._tokenizer, _Timed):
            self._tokenizer = _Timed(self._tokenizer, "tokenizer", ("encode_batch_fast",))

    IndexHome.searcher = lambda self: _Timed(searcher(self), "tantivy", tantivy_calls, True)
    onnx_scorer._session = lambda path, threads: _Timed(
        session(path, threads), "onnxruntime", ("run",)
    )
    DenseRetriever._hnsw = _timed("faiss hnsw search", hnsw)
    DenseRetriever._exact = _timed("faiss exact search", exact)
    Model2VecEncoder._load = load_timed
    try:
        yield
    finally:
        IndexHome.searcher, onnx_scorer._session = searcher, session
        DenseRetriever._hnsw, DenseRetriever._exact = hnsw, exact
        Model2VecEncoder._load = load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=1000, help="logged queries per round")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    workspace = Workspace.open(args.workspace)
    settings, _ = _settings_env(load_settings(workspace.root), caches=False, ranking=True)
    stream = bench_queries(workspace, workspace.table("products"), WARMUP + args.queries, args.seed)
    rounds = []
    with compute_threads_limited(settings.serve.compute_threads), native_calls_timed():
        engine = Engine.load(workspace, settings)
        domain = engine.resolve_domain(None)
        for query in stream[:WARMUP]:
            engine.search(SearchParams(query, domain, size=PAGE_SIZE))
        for number in range(args.rounds):
            spent.clear()
            start = time.thread_time()
            for query in stream[WARMUP:]:
                engine.search(SearchParams(query, domain, size=PAGE_SIZE))
            total_ms = 1000 * (time.thread_time() - start) / args.queries
            calls = {name: 1000 * s / args.queries for name, s in spent.most_common()}
            native_ms = sum(calls.values())
            rounds.append(
                {"search_cpu_ms": total_ms, "native_ms": native_ms, "native_calls_ms": calls}
            )
            print(
                f"round {number + 1}: {total_ms:.2f} ms of CPU per search, "
                f"{native_ms:.2f} ms ({100 * native_ms / total_ms:.0f}%) in native calls"
            )
            for name, ms in calls.items():
                print(f"    {name:46s} {ms:.3f} ms")
    report = {
        "suite": "benchmarks/native_floor",
        "workspace": str(args.workspace),
        "bundle": None if engine.bundle is None else engine.bundle.name,
        "queries": args.queries,
        "rounds": rounds,
    }
    write_json(args.report, report)
    print(f"report written to {args.report}")


if __name__ == "__main__":
    main()
