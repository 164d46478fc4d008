"""``shopsearch eval relevance``: full-catalog retrieval quality on human relevance judgments.

The catalog is every product in the given files. Systems learn only from ``--train``; the test
queries are unseen until scored. Every system retrieves the top 100 from the whole catalog for
every test query; reported with bootstrap 95% CIs over queries: NDCG@10 (graded gains,
unjudged products count 0), recall@100 of products judged relevant, and MRR.

Systems: ``baseline/bm25s`` (bm25s, numba, default parameters, titles, English stopwords),
``shopsearch/lexical``, ``shopsearch/dense`` (MiniLM), ``shopsearch/hybrid`` (fusion of the
two; weights fitted on the training judgments when given, else reciprocal-rank fusion).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.evaluate.suites.judged import JudgedSet, catalog_table, read_judged
from shopsearch.retrieval.base import Candidates, ProductKey
from shopsearch.retrieval.bm25s_baseline import BM25sBaseline
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.text.encoders import MiniLMEncoder

DEPTH = 100
METRICS = ("ndcg@10", "recall@100", "mrr")

Progress = Callable[[str], None]


@dataclass
class RelevanceSuiteConfig:
    """Inputs of the relevance suite."""

    dataset: str
    test: list[Path]
    train: list[Path]
    products: list[Path]
    cache_dir: Path
    rel_threshold: float | None = None
    fusion_queries: int = 2000
    n_resamples: int = 1000
    seed: int = 0


def _run_of(queries: Sequence[str], results: Sequence[Candidates]) -> dict[str, list[ProductKey]]:
    return {q: list(c.keys) for q, c in zip(queries, results, strict=True)}


def run_relevance_suite(config: RelevanceSuiteConfig, say: Progress = print) -> Report:
    """Build every system on the catalog, retrieve for every test query, return the report."""
    if not config.test:
        raise InvalidInputError("no --test file given; the suite needs test judgments")
    test = read_judged(config.dataset, config.test, config.rel_threshold)
    train: JudgedSet | None = None
    if config.train:
        train = read_judged(config.dataset, config.train, config.rel_threshold)
    frames = [test.products] + ([train.products] if train else [])
    if config.products:
        from shopsearch.datasets import get_loader

        extra = get_loader("generic")(config.products).products
        if extra is not None:
            frames.append(extra)
    catalog = catalog_table(frames)
    queries = list(test.qrels)
    overlap = len(set(queries) & set(train.qrels)) if train else 0
    report = Report(
        suite="relevance",
        primary_metric="ndcg@10",
        dataset={
            "name": config.dataset,
            "products": catalog.num_rows,
            "test_queries": len(queries),
            "test_judgments": sum(len(v) for v in test.qrels.values()),
            "train_queries": len(train.qrels) if train else 0,
            "train_test_query_overlap": overlap,
            "relevant_threshold_on_gain": test.relevant_threshold,
            "gain": f"grade - {test.scale.offset:g}",
        },
        config={
            "depth": DEPTH,
            "fusion_queries": config.fusion_queries,
            "seed": config.seed,
            "n_resamples": config.n_resamples,
        },
    )

    def score(name: str, results: Sequence[Candidates], seconds: float) -> None:
        evaluation = evaluate_run(
            _run_of(queries, results),
            test.qrels,
            metrics=METRICS,
            rel_threshold=test.relevant_threshold,
            n_resamples=config.n_resamples,
            seed=config.seed,
        )
        report.add_evaluation(
            name, evaluation, extra={"latency": {"ms_per_query": 1000 * seconds / len(queries)}}
        )
        say(f"{name}: ndcg@10={evaluation.metrics['ndcg@10']:.4f}")

    say(f"catalog {catalog.num_rows} products, {len(queries)} test queries")
    with report.timer("index/bm25s"):
        bm25 = BM25sBaseline().index(catalog)
    start = time.perf_counter()
    score("baseline/bm25s", bm25.retrieve_many(queries, DEPTH), time.perf_counter() - start)

    with report.timer("index/lexical"):
        lexical = LexicalRetriever().index(catalog)
    start = time.perf_counter()
    score("shopsearch/lexical", lexical.retrieve_many(queries, DEPTH), time.perf_counter() - start)

    say("encoding the catalog with MiniLM (cached by content hash)")
    with report.timer("index/dense"):
        dense = DenseRetriever(MiniLMEncoder(), cache_dir=config.cache_dir).index(catalog)
    start = time.perf_counter()
    score("shopsearch/dense", dense.retrieve_many(queries, DEPTH), time.perf_counter() - start)

    hybrid = HybridRetriever({"lexical": lexical, "dense": dense}, fusion="rrf")
    if train is not None:
        fit_queries = sorted(train.qrels)
        random.Random(config.seed).shuffle(fit_queries)
        fit_queries = fit_queries[: config.fusion_queries]
        with report.timer("fit/hybrid_fusion"):
            hybrid.fit_fusion(fit_queries, [train.qrels[q] for q in fit_queries])
        report.config["hybrid_weights"] = dict(hybrid.weighting_.weights_)
    report.config["hybrid_fusion"] = hybrid.fusion
    start = time.perf_counter()
    score("shopsearch/hybrid", hybrid.retrieve_many(queries, DEPTH), time.perf_counter() - start)
    return report
