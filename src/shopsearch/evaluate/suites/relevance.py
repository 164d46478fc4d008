"""``shopsearch eval relevance``: full-catalog retrieval quality on human relevance judgments.

The catalog is every product in the given files. Systems learn only from ``--train``; the test
queries are unseen until scored. Every system retrieves the top 100 from the whole catalog for
every test query; reported with bootstrap 95% CIs over queries: NDCG@10 (graded gains,
unjudged products count 0), recall@100 of products judged relevant, and MRR.

Systems: ``baseline/bm25s`` (bm25s, numba, default parameters, titles, English stopwords),
``shopsearch/lexical``, ``shopsearch/dense`` (MiniLM), ``shopsearch/hybrid-rrf`` (the two by
reciprocal-rank fusion) and ``shopsearch/hybrid`` (the two by weighted score fusion, weights
fitted on the training judgments when given, else reciprocal-rank fusion).

``--other-dense model2vec`` adds the same three over the static model2vec encoder distilled from
MiniLM (:mod:`shopsearch.text.static_encoder`; distilled once into ``cache_dir/encoders``):
``shopsearch/dense-model2vec``, ``hybrid-rrf-model2vec`` and ``hybrid-model2vec`` (weights
fitted on the same training queries). Every dense system reports ``query_encoding``: wall and
process-CPU microseconds per query, ``query_cost_queries`` test queries encoded one at a time.

With ``--train`` two more: ``shopsearch/two-tower`` (the MMSE two-tower encoder of
:mod:`shopsearch.retrieval.mmse` trained on the training judgments, grades as stages: hashed
n-gram towers post-fused with the frozen MiniLM vectors (learned fusion weight), which come from
the same embedding cache as the dense system's; served by faiss like the dense system) and
``shopsearch/fused`` (lexical + MiniLM dense + two-tower, weighted score fusion). The two-tower
model is trained on the training queries minus ``fusion_holdout`` of them; the fused weights are
fitted on those held-out training queries, so the weights do not favour a model on queries it
was trained on. Dense systems report their faiss
index bytes per product in ``index``.

And the compressed pair, at the same bytes per product (``pq_m`` one-byte codes):
``shopsearch/two-tower-pq`` (Poeem, :mod:`shopsearch.retrieval.poeem`: a copy of the trained
two-tower model trained further, at a tenth of its learning rate, jointly with a rotation and PQ
codebooks, exported as a faiss ``IndexPQ``) and ``baseline/faiss-pq`` (faiss ``IndexPQ``
trained post hoc on the two-tower item vectors). The trained two-tower model is saved under
``cache_dir/mmse-two-tower``.
``shopsearch/gcn`` serves the two-tower vectors enriched by SearchGCN propagation over the graph
of the training queries and their relevant products (:mod:`shopsearch.retrieval.search_gcn`).
``shopsearch/sci-two-tower`` is the two-tower model trained with the same settings plus SCI's
swapped retrieval loss (``symmetric_weight`` = ``sci_weight``, 0.5: chosen on validation
queries; :mod:`shopsearch.retrieval.mmse`), served the same way. With it, SCI's consistent
indexing (:mod:`shopsearch.retrieval.consistent_index`) over both two-tower models:
``shopsearch/<model>+ci`` (clusters and routing in the query tower's view) against
``baseline/<model>+ivf`` (the usual IVF over item vectors), ``ci_nprobe`` of about sqrt(n)
clusters probed; ``report.config["ci"]`` gives each one's recall of the exact top 100.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import faiss
import numpy as np

from shopsearch.catalog.candidates import Candidates, ProductKey
from shopsearch.config import QuerySettings
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.long_tail import (
    cold_start_qrels,
    off_vocabulary_queries,
    rare_term_queries,
)
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report, RunEvaluation, evaluate_run
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.judged import JudgedSet, catalog_table, read_judged
from shopsearch.evaluate.suites.relevance_generative import (
    LearnedParts,
    chosen_systems,
    generative_systems,
)
from shopsearch.pipeline.stages.retrieve import RetrieveStage
from shopsearch.pipeline.state import QueryInfo
from shopsearch.progress import Say
from shopsearch.query.base import QUERY_COMPONENTS, default_components
from shopsearch.query.data import QueryData, catalog_vocabulary
from shopsearch.query.models import QueryModels
from shopsearch.retrieval.base import Retriever
from shopsearch.retrieval.bm25s_baseline import BM25sBaseline
from shopsearch.retrieval.consistent_index import LearnedCIRetriever, View
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.learned_train import pq_nbits
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.retrieval.mmse import TwoTowerEncoder
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.retrieval.poeem import PoeemIndex, code_bytes, post_hoc_pq, search
from shopsearch.retrieval.search_gcn import SearchGCNEncoder
from shopsearch.text.encoders import Encoder, MiniLMEncoder
from shopsearch.text.product_text import product_texts

DEPTH = 100
#: The two-tower inputs: hashed n-gram towers post-fused with the frozen MiniLM vectors (a
#: learned fusion weight; :mod:`shopsearch.retrieval.mmse`); ``"hashed"`` is the from-scratch
#: variant. Training a head over the MiniLM vectors too scored lower on validation queries.
TWO_TOWER_BACKBONE = "hashed+minilm"
METRICS = ("ndcg@10", "recall@100", "mrr")


@dataclass
class RelevanceSuiteConfig:
    """Inputs of the relevance suite; each annotated field is an option of ``eval relevance``."""

    dataset: Annotated[
        str, option("Judgment format: homedepot, crowdflower, generic, wands or esci")
    ]
    test: Annotated[list[Path], option("Test judgments (repeat for several files)")]
    train: Annotated[list[Path], option("Training judgments; systems learn only from these")] = (
        field(default_factory=list)
    )
    products: Annotated[list[Path], option("Extra products (generic format) for the catalog")] = (
        field(default_factory=list)
    )
    cache_dir: Annotated[Path, option("Embedding cache (content-hashed; reused across runs)")] = (
        Path(".shopsearch-cache")
    )
    rel_threshold: Annotated[
        float | None,
        option(
            "Grade at which a product counts as relevant",
            default_text="the format's; Home Depot 2.33",
        ),
    ] = None
    query_components: Annotated[
        tuple[str, ...],
        option(
            "Comma list of query components of shopsearch/hybrid+query (none: leave it out)",
            default_text="those train --stage query trains",
        ),
    ] = ()
    learned: Annotated[
        tuple[str, ...],
        option(
            "Comma list of learned systems besides two-tower and fused: sci-two-tower, gcn, "
            "two-tower-pq (with baseline/faiss-pq); all; none: leave out every learned system",
            default_text="all, when --train is given",
        ),
    ] = ()
    generative: Annotated[
        tuple[str, ...],
        option(
            "Comma list of generative systems: rq-fixed, gen-sft, gen-dpo, gen-rad-dpo, "
            "fused+gen; none: leave them out",
            default_text="all, when --train is given and the learned systems run",
        ),
    ] = ()
    relevance_models: Annotated[
        tuple[str, ...],
        option(
            "Comma list of relevance models: teacher, bert2dnn (with hybrid+relevance), "
            "second-order, first-order, lref; none: leave them out",
            default_text="all but lref, when --train is given",
        ),
    ] = ()
    lref_seconds: Annotated[
        tuple[float, float, float],
        option("LREF's budgets in seconds: SFT (with data selection), Multi-CoT, DPO"),
    ] = (900.0, 480.0, 480.0)
    lref_depth: Annotated[
        int, option("Hybrid candidates per test query LREF re-ranks (it is slow)", low=1)
    ] = 10
    relevance_candidates: Annotated[
        int, option("Top hybrid candidates per training query the BERT2DNN student learns from")
    ] = 20
    relevance_depth: Annotated[
        int, option("Hybrid candidates per test query the relevance models re-rank")
    ] = 50
    other_dense: Annotated[
        tuple[str, ...],
        option(
            "Comma list of dense encoders measured beside MiniLM (model2vec): each adds "
            "shopsearch/dense-NAME, hybrid-rrf-NAME and hybrid-NAME (weights fitted on the same "
            "training queries as shopsearch/hybrid's)",
            default_text="none",
        ),
    ] = ()
    model2vec_dims: Annotated[
        int, option("Vector length of the model2vec encoder (PCA of MiniLM's 384)", low=8)
    ] = 256
    query_cost_queries: Annotated[
        int, option("Test queries each dense encoder encodes one at a time to time it", low=0)
    ] = 500
    relevance: dict[str, Any] | None = None
    fusion_queries: int = 2000
    fusion_holdout: int = 1000
    two_tower: dict[str, Any] | None = None
    generative_model: dict[str, Any] | None = None
    sci_weight: float = 0.5
    ci_nprobe: int = 8
    pq_m: int = 48
    poeem_epochs: int = 1
    n_resamples: int = 1000
    seed: Annotated[int, option("Seed for bootstrap and sampling")] = 0


#: ``--learned`` names of the systems trained beside the two-tower and ``shopsearch/fused``.
LEARNED_SYSTEMS = ("sci-two-tower", "gcn", "two-tower-pq")


def learned_systems(names: Sequence[str]) -> list[str]:
    """The ``--learned`` names (empty or ``all``: every one); a clear error for an unknown one."""
    if not names or tuple(names) == ("all",):
        return list(LEARNED_SYSTEMS)
    unknown = [n for n in names if n not in (*LEARNED_SYSTEMS, "two-tower")]
    if unknown:
        raise InvalidInputError(
            f"unknown learned system(s) {', '.join(map(repr, unknown))}; use all, none or a "
            f"comma list of two-tower, {', '.join(LEARNED_SYSTEMS)}"
        )
    return [n for n in names if n != "two-tower"]


def _run_of(queries: Sequence[str], results: Sequence[Candidates]) -> dict[str, list[ProductKey]]:
    return {q: list(c.keys) for q, c in zip(queries, results, strict=True)}


def _index_size(dense: DenseRetriever) -> dict[str, float]:
    """Bytes per product of the serialised faiss index and of the raw float32 vectors."""
    rows = max(len(dense.rows_), 1)
    return {
        "bytes_per_product": len(faiss.serialize_index(dense.index_)) / rows,
        "float32_vector_bytes": 4 * dense.vectors_.shape[1],
    }


#: ``--other-dense`` names: dense encoders measured beside MiniLM.
OTHER_DENSE = ("model2vec",)


def _other_dense(names: Sequence[str]) -> list[str]:
    """The ``--other-dense`` names; a clear error for an unknown one."""
    unknown = [n for n in names if n not in OTHER_DENSE]
    if unknown:
        raise InvalidInputError(
            f"unknown dense encoder(s) {', '.join(map(repr, unknown))} in --other-dense; use "
            f"a comma list of {', '.join(OTHER_DENSE)}"
        )
    return list(dict.fromkeys(names))


def _other_encoder(name: str, config: RelevanceSuiteConfig) -> Encoder:
    """The ``--other-dense`` encoder ``name``; model2vec distils into ``cache_dir/encoders``."""
    from shopsearch.text.static_encoder import Model2VecEncoder

    return Model2VecEncoder(
        pca_dims=config.model2vec_dims, folder=str(config.cache_dir / "encoders")
    )


def query_cost(encoder: Encoder, queries: Sequence[str], n: int) -> dict[str, float]:
    """Microseconds of wall and process CPU time per query, encoding ``n`` of ``queries`` one at
    a time (as a search does on a query-cache miss), after encoding the first one to warm up."""
    sample = list(queries[:n])
    if not sample:
        return {}
    encoder.encode_queries(sample[:1])
    wall, cpu = time.perf_counter(), time.process_time()
    for query in sample:
        encoder.encode_queries([query])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "queries": len(sample),
        "us_per_query_wall": 1e6 * wall / len(sample),
        "us_per_query_cpu": 1e6 * cpu / len(sample),
    }


def run_relevance_suite(config: RelevanceSuiteConfig, say: Say = print) -> Report:
    """Build every system on the catalog, retrieve for every test query, return the report."""
    if not config.test:
        raise InvalidInputError("no --test file given; the suite needs test judgments")
    if config.train and config.relevance_models != ("none",):
        from shopsearch.evaluate.suites.relevance_models import chosen_models

        chosen_models(config.relevance_models)  # a wrong name fails before the long work
    if config.generative != ("none",):
        chosen_systems(config.generative)
    if config.learned != ("none",):
        learned_systems(config.learned)
    other_dense = _other_dense(config.other_dense)
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
        primary_metric=RelevanceSuite.primary_metric,
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

    def score(
        name: str,
        results: Sequence[Candidates],
        seconds: float,
        index: dict[str, float] | None = None,
        extra: dict[str, Any] | None = None,
        more: RunEvaluation[str] | None = None,
    ) -> None:
        evaluation = evaluate_run(
            _run_of(queries, results),
            test.qrels,
            metrics=METRICS,
            rel_threshold=test.relevant_threshold,
            n_resamples=config.n_resamples,
            seed=config.seed,
        )
        if more is not None:  # further metrics of the same queries
            evaluation.metrics.update(more.metrics)
            evaluation.ci.update(more.ci)
        details = {"latency": {"ms_per_query": 1000 * seconds / len(queries)}, **(extra or {})}
        if index is not None:
            details["index"] = index
        slices = (("long_tail", long_tail, test.qrels), ("misspelled", misspelled, test.qrels),
                  ("cold_start", list(cold_qrels), cold_qrels))  # fmt: skip
        for where, ids, qrels in slices:
            # long tail: a term rare in training; misspelled: a word not in the catalog; cold
            # start: only the relevant products that are in no training pair count
            if ids:
                part = evaluate_run(
                    _run_of(queries, results),
                    qrels,
                    metrics=METRICS,
                    rel_threshold=test.relevant_threshold,
                    query_ids=ids,
                    n_resamples=config.n_resamples,
                    seed=config.seed,
                )
                details[where] = {
                    **part.metrics,
                    "queries": len(ids),
                    "ci95": {k: list(v) for k, v in part.ci.items()},
                }
        report.add_evaluation(name, evaluation, extra=details)
        say(f"{name}: ndcg@10={evaluation.metrics['ndcg@10']:.4f}")

    long_tail = rare_term_queries(train.qrels, queries) if train else []
    cold_qrels = cold_start_qrels(train.qrels, test.qrels, test.relevant_threshold) if train else {}
    report.dataset["cold_start_test_queries"] = len(cold_qrels)
    report.dataset["long_tail_test_queries"] = len(long_tail)
    misspelled = off_vocabulary_queries(catalog_vocabulary(catalog.to_pandas()).index, queries)
    report.dataset["misspelled_test_queries"] = len(misspelled)
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
    fit_queries: list[str] = []
    if train is not None:
        fit_queries = sorted(train.qrels)
        random.Random(config.seed).shuffle(fit_queries)
        fit_queries = fit_queries[: config.fusion_queries]
    dense_sources = [("", dense)]
    for name in other_dense:
        encoder = _other_encoder(name, config)
        say(f"encoding the catalog with {name} (distilled once into {config.cache_dir})")
        with report.timer(f"index/dense-{name}"):
            dense_sources.append(
                (f"-{name}", DenseRetriever(encoder, cache_dir=config.cache_dir).index(catalog))
            )
    hybrid = HybridRetriever({"lexical": lexical, "dense": dense}, fusion="rrf")
    for suffix, source in dense_sources:
        start = time.perf_counter()
        found = source.retrieve_many(queries, DEPTH)
        seconds = time.perf_counter() - start
        cost = query_cost(source.encoder, queries, config.query_cost_queries)
        report.config[f"dense{suffix}_vector_space"] = source.vector_space
        score(f"shopsearch/dense{suffix}", found, seconds, _index_size(source),
              extra={"query_encoding": cost})  # fmt: skip
        both = HybridRetriever({"lexical": lexical, "dense": source}, fusion="rrf")
        start = time.perf_counter()
        run = both.retrieve_many(queries, DEPTH)
        score(f"shopsearch/hybrid-rrf{suffix}", run, time.perf_counter() - start)
        if train is not None:
            with report.timer(f"fit/hybrid{suffix}_fusion"):
                both.fit_fusion(fit_queries, [train.qrels[q] for q in fit_queries])
            report.config[f"hybrid{suffix}_weights"] = dict(both.weighting_.weights_)
        report.config[f"hybrid{suffix}_fusion"] = both.fusion
        start = time.perf_counter()
        score(f"shopsearch/hybrid{suffix}", both.retrieve_many(queries, DEPTH),
              time.perf_counter() - start)  # fmt: skip
        if not suffix:
            hybrid = both
    if train is not None and config.query_components != ("none",):
        _query_system(config, catalog, train, queries, hybrid, report, score, say)
    if train is not None and config.relevance_models != ("none",):
        from shopsearch.evaluate.suites.relevance_models import relevance_systems

        sft, cot, dpo = config.lref_seconds
        settings = {"seed": config.seed, "n_resamples": config.n_resamples,
                    "candidates": config.relevance_candidates, "depth": config.relevance_depth,
                    "models": config.relevance_models, "lref_depth": config.lref_depth,
                    **(config.relevance or {})}  # fmt: skip
        settings["lref"] = {"sft_seconds": sft, "cot_seconds": cot, "dpo_seconds": dpo,
                            "seed": config.seed, **settings.get("lref", {})}  # fmt: skip
        relevance_systems(settings, catalog, train, test, queries, hybrid, dense, bm25,
                          report, score, config.cache_dir, say)  # fmt: skip
    if train is not None and config.learned != ("none",):
        parts, fused_sources = _learned_systems(
            config, catalog, train, queries, lexical, dense, report, score, say
        )
        if config.generative != ("none",):
            generative_systems(config.generative, config.generative_model or {}, parts, catalog,
                               train.qrels, fused_sources, dense, queries,
                               test.relevant_threshold, config.cache_dir, report, score,
                               say)  # fmt: skip
    return report


def _query_system(
    config: RelevanceSuiteConfig,
    catalog: Any,
    train: JudgedSet,
    queries: list[str],
    hybrid: HybridRetriever,
    report: Report,
    score: Callable[..., None],
    say: Say,
) -> None:
    """``shopsearch/hybrid+query``: the hybrid retrieval with query understanding fitted on the
    training judgments, as the engine's ``query`` and ``retrieve`` stages run it."""
    names = list(config.query_components) or default_components()
    if not names:
        report.config["hybrid+query"] = "no query component is registered"
        return
    data = QueryData.from_judgments(catalog.to_pandas(), train.qrels, train.relevant_threshold)
    say(f"fitting query understanding ({', '.join(names)}) on the training judgments")
    with report.timer("fit/query"):
        models = QueryModels([QUERY_COMPONENTS.get(n)().fit(data) for n in names])
    stage = RetrieveStage(hybrid, QuerySettings())
    start = time.perf_counter()
    results = []
    changed = 0
    for query in queries:
        analysis = models.analyze(query)
        info = QueryInfo(
            query,
            analysis.text,
            intents=analysis.intents,
            rewrites=analysis.rewrites,
            head=analysis.head,
        )
        changed += analysis.text != query
        results.append(hybrid.search(analysis.text, DEPTH, None, stage.plan(info)).candidates)
    report.config["hybrid+query"] = {"components": models.names, "queries_changed": changed}
    score("shopsearch/hybrid+query", results, time.perf_counter() - start)


def _learned_systems(
    config: RelevanceSuiteConfig,
    catalog: Any,
    train: JudgedSet,
    queries: list[str],
    lexical: LexicalRetriever,
    dense: DenseRetriever,
    report: Report,
    score: Callable[..., None],
    say: Say,
) -> tuple[LearnedParts, dict[str, Retriever]]:
    """``shopsearch/two-tower`` and ``shopsearch/fused``: trained on the training judgments.
    Returns what the generative systems reuse, and the sources of ``shopsearch/fused``."""
    train_queries = sorted(train.qrels)
    random.Random(config.seed + 1).shuffle(train_queries)
    holdout = train_queries[: min(config.fusion_holdout, len(train_queries) // 5)]
    fit_qrels = {q: train.qrels[q] for q in train_queries[len(holdout) :]}
    keys = list(
        zip(
            catalog.column("domain").to_pylist(),
            catalog.column("product_id").to_pylist(),
            strict=True,
        )
    )
    texts = dict(zip(keys, product_texts(catalog), strict=True))
    settings: dict[str, Any] = {
        "backbone": TWO_TOWER_BACKBONE,
        "train_dense_head": False,
        "dense_cache": str(config.cache_dir),
        **(config.two_tower or {}),
    }
    say(f"training the two-tower model on {len(fit_qrels)} training queries")
    samples = StagedSamples.from_judgments(fit_qrels, texts)
    with report.timer("fit/two_tower"):
        encoder = TwoTowerEncoder(**settings).fit(samples)
    encoder.save(config.cache_dir / "mmse-two-tower")
    report.config["two_tower"] = {
        **encoder.get_config(),
        "train_queries": len(fit_qrels),
        "loss_per_epoch": encoder.history_,
    }
    with report.timer("index/two_tower"):
        two_tower = DenseRetriever(encoder).index(catalog)
    start = time.perf_counter()
    found = two_tower.retrieve_many(queries, DEPTH)
    score("shopsearch/two-tower", found, time.perf_counter() - start, _index_size(two_tower))
    chosen = learned_systems(config.learned)
    if "sci-two-tower" in chosen:
        _ci_systems("two-tower", encoder, config, catalog, queries, report, score)
        _sci_system(config, catalog, settings, samples, queries, report, score)
    if "gcn" in chosen:
        with report.timer("fit/gcn"):
            gcn = DenseRetriever(SearchGCNEncoder().fit(encoder, samples)).index(catalog)
        start = time.perf_counter()
        found_gcn = gcn.retrieve_many(queries, DEPTH)
        score("shopsearch/gcn", found_gcn, time.perf_counter() - start, _index_size(gcn))

    fused = HybridRetriever({"lexical": lexical, "dense": dense, "two_tower": two_tower})
    with report.timer("fit/fused_fusion"):
        fused.fit_fusion(holdout, [train.qrels[q] for q in holdout])
    report.config["fused_weights"] = dict(fused.weighting_.weights_)
    report.config["fused_fit_queries"] = len(holdout)
    start = time.perf_counter()
    score("shopsearch/fused", fused.retrieve_many(queries, DEPTH), time.perf_counter() - start)
    if "two-tower-pq" in chosen:
        _pq_systems(config, encoder, two_tower, samples, texts, keys, queries, report, score, say)
    return LearnedParts(two_tower, holdout, fit_qrels, texts), dict(fused.sources)


def _pq_systems(
    config: RelevanceSuiteConfig,
    encoder: TwoTowerEncoder,
    two_tower: DenseRetriever,
    samples: StagedSamples,
    texts: dict[ProductKey, str],
    keys: list[ProductKey],
    queries: list[str],
    report: Report,
    score: Callable[..., None],
    say: Say,
) -> None:
    """``baseline/faiss-pq`` and ``shopsearch/two-tower-pq`` (Poeem) over the two-tower."""
    item_vectors = two_tower.vectors_
    with report.timer("index/faiss_pq"):
        baseline = post_hoc_pq(item_vectors, config.pq_m, pq_nbits(len(item_vectors)))
    start = time.perf_counter()
    found = search(baseline, encoder.encode_queries(queries), keys, DEPTH)
    score("baseline/faiss-pq", found, time.perf_counter() - start, code_bytes(baseline))
    say(f"Poeem: training a PQ index (m={config.pq_m}) jointly with the two-tower model")
    joint = TwoTowerEncoder.load(config.cache_dir / "mmse-two-tower")
    with report.timer("fit/poeem"):
        poeem = PoeemIndex(
            m=config.pq_m,
            nbits=pq_nbits(len(item_vectors)),
            epochs=config.poeem_epochs,
            seed=config.seed,
        )
        poeem.fit(joint, samples)
    with report.timer("index/poeem"):
        index = poeem.build(joint.encode_items(list(texts.values())))
    report.config["poeem"] = {
        "m": poeem.m,
        "nbits": poeem.nbits,
        "lr": poeem.lr,
        "tower_lr": poeem.tower_lr,
        "loss_per_epoch": poeem.history_,
    }
    start = time.perf_counter()
    found = search(index, joint.encode_queries(queries), keys, DEPTH)
    score("shopsearch/two-tower-pq", found, time.perf_counter() - start, code_bytes(index))


def _sci_system(
    config: RelevanceSuiteConfig,
    catalog: Any,
    settings: dict[str, Any],
    samples: StagedSamples,
    queries: list[str],
    report: Report,
    score: Callable[..., None],
) -> None:
    """``shopsearch/sci-two-tower``: the two-tower ``settings`` plus SCI's swapped loss."""
    with report.timer("fit/sci_two_tower"):
        encoder = TwoTowerEncoder(**{**settings, "symmetric_weight": config.sci_weight})
        encoder.fit(samples)
    report.config["sci_two_tower"] = {
        **encoder.get_config(),
        "train_queries": len(samples.queries),
        "loss_per_epoch": encoder.history_,
    }
    with report.timer("index/sci_two_tower"):
        sci = DenseRetriever(encoder).index(catalog)
    start = time.perf_counter()
    found = sci.retrieve_many(queries, DEPTH)
    score("shopsearch/sci-two-tower", found, time.perf_counter() - start, _index_size(sci))
    _ci_systems("sci-two-tower", encoder, config, catalog, queries, report, score)


def _ci_systems(
    model: str,
    encoder: TwoTowerEncoder,
    config: RelevanceSuiteConfig,
    catalog: Any,
    queries: list[str],
    report: Report,
    score: Callable[..., None],
) -> None:
    """``baseline/<model>+ivf`` and ``shopsearch/<model>+ci`` over ``encoder``; each one's
    recall of the exact top 100 (brute force over the same vectors) goes to
    ``report.config["ci"]``."""
    exact: list[set[int]] = []
    views: tuple[tuple[View, str], ...] = (
        ("item", f"baseline/{model}+ivf"),
        ("dual", f"shopsearch/{model}+ci"),
    )
    for view, name in views:
        with report.timer(f"index/{name}"):
            index = LearnedCIRetriever(encoder, view=view, nprobe=config.ci_nprobe)
            index.index(catalog)
        start = time.perf_counter()
        found = index.retrieve_many(queries, DEPTH)
        score(name, found, time.perf_counter() - start)
        depth = min(DEPTH, len(index.rows_))
        if not exact:
            vectors = index.query_vectors(queries)
            for at in range(0, len(queries), 256):
                scores = vectors[at : at + 256] @ index.vectors_.T
                top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
                exact.extend(set(row.tolist()) for row in top)
        row_of = index.rows_.row_of
        recall = [
            len({row_of[key] for key in hits.keys[:depth]} & best) / depth
            for hits, best in zip(found, exact, strict=True)
        ]
        assert index.centroids_ is not None
        report.config.setdefault("ci", {})[name] = {
            "nlist": len(index.centroids_),
            "nprobe": config.ci_nprobe,
            "recall_of_exact_top100": float(np.mean(recall)),
        }


@SUITES.register()
class RelevanceSuite(Suite[RelevanceSuiteConfig]):
    """Full-catalog retrieval on human judgments: NDCG@10, recall@100 and MRR with 95% CIs.

    Example: shopsearch eval relevance --dataset homedepot --train A.csv --test B.csv
    --report r.json
    """

    name = "relevance"
    config_type = RelevanceSuiteConfig
    primary_metric = "ndcg@10"

    def run(self, config: RelevanceSuiteConfig, say: Say) -> Report:
        """:func:`run_relevance_suite`."""
        return run_relevance_suite(config, say)
