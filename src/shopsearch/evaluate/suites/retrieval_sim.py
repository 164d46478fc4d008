"""``shopsearch eval retrieval --dataset sim``: candidate retrieval against the simulator's truth.

**Split by time.** The workspace's requests are ordered by timestamp; the last
``test_fraction`` are the test requests and nothing about them (query, impressions, clicks) is
trained on. Of the earlier requests, the latest ``fusion_holdout`` share fits the fusion weights
of ``shopsearch/fused`` and everything before trains the learned models (two-tower, Poeem,
SearchGCN), with the MMSE multi-stage samples of
:func:`~shopsearch.retrieval.learned_train.workspace_samples`. Head queries recur over time, so
a test query may have been typed in training requests too (as in production); the long-tail
slice below isolates those that were not. At most ``max_test_requests`` test requests (a seeded
random sample) are scored.

**Truth.** Each test request carries the simulator's need (leaf category, insisted-on brand and
attributes; :class:`~shopsearch.simulate.truth.GroundTruth`). Every product of the request's
market gets its true grade 0-3 (:func:`~shopsearch.simulate.behaviour.grades`): 0 another leaf,
3 matches every insisted-on field, 2 misses one, 1 misses more. NDCG@10 uses the grades as gains;
recall@100 and recall@500 count products graded ``>= rel_threshold`` (default 2: the right
category missing at most one insisted-on field) among all such products of the market. Requests
with no such product are not scored.

**Systems.** Every system retrieves within the request's market (domain filter), top 500:
``baseline/bm25s`` (bm25s over titles, one index per market: bm25s has no filters),
``shopsearch/lexical``, ``shopsearch/dense`` (MiniLM, vectors through the embedding cache),
``shopsearch/two-tower`` (MMSE), ``shopsearch/two-tower-pq`` (Poeem, ``pq_m``-byte codes),
``baseline/faiss-pq`` (faiss ``IndexPQ`` trained post hoc on the two-tower item vectors, same
bytes), ``shopsearch/gcn`` (SearchGCN), ``shopsearch/hybrid-rrf`` and ``shopsearch/hybrid``
(lexical + dense, reciprocal-rank fusion or weighted score fusion fitted on the held-out
training requests' logged clicks: the two bundles ``shopsearch index`` builds with ``[retrieval]
fusion = "rrf"`` or its default ``"weighted"``) and ``shopsearch/fused`` (lexical + dense +
two-tower + gcn, weighted score fusion fitted the same way).

**GenRec** (``--genrec all``; :mod:`.retrieval_sim_genrec`): semantic-ID generators trained on
the training requests' pages and retrieving per test request with the user's earlier history.

**Also reported** per system: ``by_domain`` (the metrics per market), ``long_tail`` (test
requests whose query text occurred at most ``long_tail_max_count`` times, default 1, among the
training requests of any market), ``index`` (bytes per product of the serialised index) and
``latency`` (``ms_per_query`` over the whole batched run, and ``p50_ms`` / ``p99_ms`` of
``latency_queries`` single queries at top 100, one at a time).
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.long_tail import rare_queries
from shopsearch.evaluate.metrics import relevant_query_ids
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.evaluate.sim_truth import truth_qrels
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.evaluate.suites.retrieval_sim_genrec import genrec_systems, run_genrec_systems
from shopsearch.progress import Say
from shopsearch.retrieval.base import Retriever
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.learned import LearnedPQRetriever, index_bytes
from shopsearch.retrieval.learned_train import (
    LearnedConfig,
    catalog_of,
    fit_weighted_fusion,
    item_texts,
    keyed_qrels,
    train_learned,
    workspace_samples,
)
from shopsearch.simulate.truth import GroundTruth
from shopsearch.store.workspace import Workspace

DEPTH = 500
METRICS = ("ndcg@10", "recall@100", "recall@500")
SYSTEMS = (
    "baseline/bm25s",
    "shopsearch/lexical",
    "shopsearch/dense",
    "shopsearch/two-tower",
    "shopsearch/two-tower-pq",
    "baseline/faiss-pq",
    "shopsearch/gcn",
    "shopsearch/hybrid-rrf",
    "shopsearch/hybrid",
    "shopsearch/fused",
)
#: Systems that fuse sources (they need the lexical and dense sources).
_FUSIONS = {"shopsearch/hybrid-rrf", "shopsearch/hybrid", "shopsearch/fused"}


@dataclass
class RetrievalSimConfig:
    """Inputs of the simulated retrieval suite.

    Attributes:
        workspace: a simulated workspace (``shopsearch simulate``); only read.
        cache_dir: MiniLM embedding cache (default ``W/cache/embeddings``).
        test_fraction: share of the latest requests tested.
        fusion_holdout: share of the training requests (the latest) that fits fusion weights.
        max_test_requests: most test requests scored (seeded sample).
        rel_threshold: true grade at which a product counts as relevant for recall.
        long_tail_max_count: a test query seen at most this often in training is long-tail.
        epochs: two-tower training epochs.
        two_tower: other :class:`~shopsearch.retrieval.mmse.TwoTowerEncoder` parameters.
        pq_m: PQ bytes per product of Poeem and the post-hoc PQ baseline.
        poeem_epochs: Poeem joint-training epochs.
        latency_queries: single queries timed one at a time per system.
        n_resamples: bootstrap resamples of each CI.
        seed: seed of sampling, training and bootstrap.
        systems: which systems to run (default: all of :data:`SYSTEMS`).
        faiss_threads: OpenMP threads of faiss (k-means, index builds, batched searches); one
            is fastest on a shared 2-core machine.
        genrec: GenRec systems to add (:mod:`.retrieval_sim_genrec`): ``all``, ``none`` or
            names of its ``GENREC_SYSTEMS``.
    """

    workspace: Annotated[
        Path,
        option(
            "Simulated workspace (tables only read; vectors cached)",
            flags=("--workspace", "-w"),
            metavar="W",
        ),
    ]
    cache_dir: Annotated[
        Path | None, option("MiniLM embedding cache", default_text="W/cache/embeddings")
    ] = None
    test_fraction: Annotated[float, option("Share of latest requests tested")] = 0.2
    fusion_holdout: float = 0.1
    max_test_requests: Annotated[int, option("Most test requests scored (seeded sample)")] = 2000
    rel_threshold: Annotated[
        int, option("True grade (0-3) at which a product counts for recall")
    ] = 2
    long_tail_max_count: int = 1
    epochs: Annotated[int, option("Two-tower training epochs")] = 3
    two_tower: dict[str, Any] = field(default_factory=dict)
    pq_m: int = 48
    poeem_epochs: int = 1
    latency_queries: int = 200
    n_resamples: int = 200
    seed: Annotated[int, option("Seed of sampling, training and bootstrap")] = 0
    systems: Annotated[tuple[str, ...], option("Comma list of systems", default_text="all")] = ()
    faiss_threads: int = 1
    genrec: Annotated[
        tuple[str, ...],
        option("GenRec systems (all, none or names; retrieval_sim_genrec)", default_text="none"),
    ] = ("none",)


@dataclass
class _Test:
    """The scored test requests and their truth."""

    request_ids: list[str]
    query: dict[str, str]
    domain: dict[str, str]
    qrels: dict[str, dict[ProductKey, float]]
    scored: list[str]
    long_tail: list[str]


def _split(
    workspace: Workspace, config: RetrievalSimConfig
) -> tuple[list[str], list[str], list[str]]:
    """Request ids by time: (training, fusion hold-out, test)."""
    if not 0 < config.test_fraction < 1 or not 0 <= config.fusion_holdout < 1:
        raise InvalidInputError(
            f"test_fraction={config.test_fraction}, fusion_holdout={config.fusion_holdout}: "
            "use 0 < test_fraction < 1 and 0 <= fusion_holdout < 1"
        )
    ids = [
        r
        for (r,) in workspace.connect()
        .execute("SELECT request_id FROM requests ORDER BY timestamp, request_id")
        .fetchall()
    ]
    if len(ids) < 10:
        raise InvalidInputError(
            f"workspace {workspace.root} has {len(ids)} logged requests; simulate at least 10 "
            "(shopsearch simulate --sessions N)"
        )
    cut = len(ids) - max(1, round(config.test_fraction * len(ids)))
    train, test = ids[:cut], ids[cut:]
    hold = round(config.fusion_holdout * len(train))
    return train[: len(train) - hold], train[len(train) - hold :], test


def _test_set(
    workspace: Workspace,
    truth: GroundTruth,
    products: pa.Table,
    train_ids: Sequence[str],
    test_ids: Sequence[str],
    config: RetrievalSimConfig,
) -> _Test:
    requests = workspace.table("requests", ["request_id", "domain", "query"])
    query = dict(
        zip(
            requests.column("request_id").to_pylist(),
            requests.column("query").to_pylist(),
            strict=True,
        )
    )
    domain = dict(
        zip(
            requests.column("request_id").to_pylist(),
            requests.column("domain").to_pylist(),
            strict=True,
        )
    )
    sample = list(test_ids)
    if len(sample) > config.max_test_requests:
        sample = sorted(random.Random(config.seed).sample(sample, config.max_test_requests))
    qrels = truth_qrels(truth, products, sample)
    scored = relevant_query_ids(qrels, config.rel_threshold)
    rare = set(
        rare_queries(
            [query[r] for r in train_ids], [query[r] for r in scored], config.long_tail_max_count
        )
    )
    tail = [r for r in scored if query[r] in rare]
    return _Test(sample, query, domain, qrels, scored, tail)


def _retrieve_all(
    retriever: Any, test: _Test, depth: int, filtered: bool = True
) -> tuple[dict[str, list[ProductKey]], float]:
    """Each scored request's top ``depth`` within its market; seconds per distinct query."""
    pairs = sorted({(test.domain[r], test.query[r]) for r in test.scored})
    found: dict[tuple[str, str], Candidates] = {}
    start = time.perf_counter()
    by_domain: dict[str, list[str]] = {}
    for d, q in pairs:
        by_domain.setdefault(d, []).append(q)
    for d, queries in by_domain.items():
        if filtered:
            results = retriever.retrieve_many(queries, depth, Filters(domain=d))
        else:
            market = retriever[d]
            results = market.retrieve_many(queries, min(depth, len(market.keys_)))
        found.update({(d, q): c for q, c in zip(queries, results, strict=True)})
    seconds = (time.perf_counter() - start) / max(len(pairs), 1)
    run = {r: list(found[(test.domain[r], test.query[r])].keys) for r in test.scored}
    return run, seconds


def _single_latency(retriever: Retriever, test: _Test, n: int, seed: int) -> dict[str, float]:
    """p50 / p99 ms of ``n`` single queries (top 100, market filter), one at a time."""
    pairs = sorted({(test.domain[r], test.query[r]) for r in test.scored})
    random.Random(seed).shuffle(pairs)
    sources = getattr(retriever, "sources", {"self": retriever})
    for r in sources.values():
        if isinstance(r, DenseRetriever):
            r.clear_query_cache()  # every timed query is encoded cold
    times = []
    for d, q in pairs[:n]:
        start = time.perf_counter()
        retriever.retrieve(q, 100, Filters(domain=d))
        times.append(1000 * (time.perf_counter() - start))
    if not times:
        return {}
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_retrieval_sim_suite(config: RetrievalSimConfig, say: Say = print) -> Report:
    """Train on the early requests, retrieve for the late ones, score against the truth."""
    import faiss

    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(config.faiss_threads)
    try:
        return _run(config, say)
    finally:
        faiss.omp_set_num_threads(previous)


def _run(config: RetrievalSimConfig, say: Say) -> Report:
    from shopsearch.retrieval.bm25s_baseline import BM25sBaseline
    from shopsearch.retrieval.fusion import WeightedScoreFusion
    from shopsearch.retrieval.hybrid import HybridRetriever
    from shopsearch.retrieval.lexical import LexicalRetriever
    from shopsearch.retrieval.poeem import post_hoc_pq
    from shopsearch.text.encoders import MiniLMEncoder

    systems = config.systems or SYSTEMS
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise InvalidInputError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    wall = time.perf_counter()
    workspace = Workspace.open(config.workspace)
    truth = GroundTruth.load(workspace)
    products = catalog_of(workspace)
    train_ids, holdout_ids, test_ids = _split(workspace, config)
    test = _test_set(workspace, truth, products, train_ids, test_ids, config)
    if not test.scored:
        raise InvalidInputError(
            f"no test request has a product graded >= {config.rel_threshold}; lower "
            "--rel-threshold or simulate more requests"
        )
    sim_config = orjson.loads((workspace.root / "ground_truth" / "config.json").read_bytes())
    sizes = [sum(g >= config.rel_threshold for g in test.qrels[r].values()) for r in test.scored]
    report = Report(
        suite="retrieval",
        primary_metric=RetrievalSimSuite.primary_metric,
        dataset={
            "name": "sim",
            "workspace": str(config.workspace),
            "products": products.num_rows,
            "split": "by time",
            "train_requests": len(train_ids),
            "fusion_holdout_requests": len(holdout_ids),
            "test_requests": len(test_ids),
            "scored_test_requests": len(test.scored),
            "distinct_test_queries": len({(test.domain[r], test.query[r]) for r in test.scored}),
            "long_tail_test_requests": len(test.long_tail),
            "relevant_per_request_median": float(np.median(sizes)),
            "rel_threshold": config.rel_threshold,
        },
        config={
            "depth": DEPTH,
            "test_fraction": config.test_fraction,
            "fusion_holdout": config.fusion_holdout,
            "max_test_requests": config.max_test_requests,
            "long_tail": f"query seen <= {config.long_tail_max_count} times in training requests",
            "seed": config.seed,
            "n_resamples": config.n_resamples,
            "simulation": sim_config.get("config", sim_config),
        },
    )
    say(
        f"{products.num_rows} products; {len(train_ids)} training, {len(holdout_ids)} fusion "
        f"hold-out and {len(test_ids)} test requests ({len(test.scored)} scored, "
        f"{len(test.long_tail)} long-tail)"
    )
    domains = sorted({test.domain[r] for r in test.scored})

    def metrics_of(run: Mapping[str, list[ProductKey]], ids: list[str], boot: int) -> Any:
        return evaluate_run(
            run,
            test.qrels,
            metrics=METRICS,
            rel_threshold=config.rel_threshold,
            query_ids=ids,
            n_resamples=boot,
            seed=config.seed,
        )

    def score(
        name: str,
        retriever: Any,
        index: dict[str, float] | None,
        filtered: bool = True,
    ) -> None:
        latency: dict[str, float] = {}
        if filtered:  # single queries first, while query-vector caches are cold
            latency.update(_single_latency(retriever, test, config.latency_queries, config.seed))
        run, seconds = _retrieve_all(retriever, test, DEPTH, filtered)
        evaluation = metrics_of(run, test.scored, config.n_resamples)
        latency["ms_per_query"] = 1000 * seconds
        extra: dict[str, Any] = {"latency": latency}
        if index is not None:
            extra["index"] = index
        extra["by_domain"] = {
            d: metrics_of(run, [r for r in test.scored if test.domain[r] == d], 0).metrics
            for d in domains
            if any(test.domain[r] == d for r in test.scored)
        }
        if test.long_tail:
            tail = metrics_of(run, test.long_tail, config.n_resamples)
            extra["long_tail"] = {
                **tail.metrics,
                "requests": len(test.long_tail),
                "ci95": {k: list(v) for k, v in tail.ci.items()},
            }
        report.add_evaluation(name, evaluation, extra=extra)
        m = evaluation.metrics
        say(
            f"{name}: ndcg@10={m['ndcg@10']:.4f} recall@100={m['recall@100']:.4f} "
            f"recall@500={m['recall@500']:.4f}"
        )

    if "baseline/bm25s" in systems:
        with report.timer("index/bm25s"):
            per_market = {
                d: BM25sBaseline().index(products.filter(pc.equal(products["domain"], d)))
                for d in domains
            }
        score("baseline/bm25s", per_market, None, filtered=False)
    need_lexical = {"shopsearch/lexical", *_FUSIONS} & set(systems)
    lexical = None
    if need_lexical:
        with report.timer("index/lexical"):
            lexical = LexicalRetriever().index(products)
        if "shopsearch/lexical" in systems:
            size = _dir_bytes(lexical.home_.root) / max(products.num_rows, 1)
            score("shopsearch/lexical", lexical, {"bytes_per_product": size})
    dense = None
    genrec = genrec_systems(config.genrec)
    if {"shopsearch/dense", *_FUSIONS} & set(systems) or genrec:
        say("encoding the catalog with MiniLM (cached by content hash)")
        cache = config.cache_dir or workspace.dir("cache") / "embeddings"
        with report.timer("index/dense"):
            dense = DenseRetriever(MiniLMEncoder(), cache_dir=cache, query_cache_size=10**6).index(
                products
            )
        if "shopsearch/dense" in systems:
            score("shopsearch/dense", dense, index_bytes(dense))

    texts = item_texts(products)
    hold = workspace_samples(workspace, texts, holdout_ids) if holdout_ids else None
    gains: dict[str, dict[ProductKey, float]] = {}
    if hold is not None:
        qrels = keyed_qrels(hold.samples, list(texts))
        gains = {q: {k: max(s - 1.0, 0.0) for k, s in j.items()} for q, j in qrels.items()}

    def fit(hybrid: HybridRetriever, key: str, grid_steps: int) -> None:
        """Weighted fusion fitted on the held-out clicks (rrf when there are none)."""
        hybrid.weighting_ = WeightedScoreFusion(list(hybrid.sources), grid_steps=grid_steps)
        with report.timer(f"fit/{key}_fusion"):
            hybrid.per_source_k = 200
            fitted = bool(gains) and fit_weighted_fusion(
                hybrid, gains, max_queries=500, seed=config.seed
            )
            hybrid.per_source_k = DEPTH
        hybrid.fusion = "weighted" if fitted else "rrf"
        report.config[f"{key}_fusion"] = hybrid.fusion
        report.config[f"{key}_weights"] = dict(hybrid.weighting_.weights_) if fitted else None

    for name in ("shopsearch/hybrid-rrf", "shopsearch/hybrid"):
        if name in systems:
            assert lexical is not None
            assert dense is not None
            hybrid = HybridRetriever({"lexical": lexical, "dense": dense}, per_source_k=DEPTH)
            if name == "shopsearch/hybrid":
                fit(hybrid, "hybrid", grid_steps=20)  # as shopsearch index fits it
            score(name, hybrid, None)

    if genrec:
        assert dense is not None
        run_genrec_systems(
            report, workspace, products, dense, texts, train_ids, test, genrec,
            rel_threshold=config.rel_threshold, n_resamples=config.n_resamples,
            seed=config.seed, say=say,
        )  # fmt: skip
    learned_systems = set(systems) - {"baseline/bm25s", "shopsearch/lexical", "shopsearch/dense",
                                      "shopsearch/hybrid-rrf", "shopsearch/hybrid"}  # fmt: skip
    if not learned_systems:
        report.timing("total", time.perf_counter() - wall)
        return report
    models = ["two-tower"]
    if "shopsearch/gcn" in systems or "shopsearch/fused" in systems:
        models.append("gcn")
    if "shopsearch/two-tower-pq" in systems:
        models.append("two-tower-pq")
    log = workspace_samples(workspace, texts, train_ids)
    learned_config = LearnedConfig(
        models=models,
        two_tower={**config.two_tower, "epochs": config.epochs},
        pq_m=config.pq_m,
        poeem_epochs=config.poeem_epochs,
        seed=config.seed,
    )
    with report.timer("fit/learned"):
        learned = train_learned(log, products, learned_config, say=say)
    report.config["learned"] = {
        "trained_on": log.source,
        "queries": len(log.samples.queries),
        "pairs": len(log.samples.stage),
        **learned.info,
    }
    two_tower = learned.retrievers["two-tower"]
    assert isinstance(two_tower, DenseRetriever)  # the two-tower models are dense sources
    if "shopsearch/two-tower" in systems:
        score("shopsearch/two-tower", two_tower, index_bytes(two_tower))
    if "shopsearch/two-tower-pq" in systems:
        pq = learned.retrievers["two-tower-pq"]
        assert isinstance(pq, DenseRetriever)
        score("shopsearch/two-tower-pq", pq, index_bytes(pq))
    if "baseline/faiss-pq" in systems:
        nbits = int(learned.info.get("two-tower-pq", {}).get("nbits", 8))
        with report.timer("index/faiss_pq"):
            quantizer = post_hoc_pq(two_tower.vectors_, config.pq_m, nbits)
            quantizer.reset()
            baseline = LearnedPQRetriever(learned.encoder, quantizer=quantizer).index(products)
        score("baseline/faiss-pq", baseline, index_bytes(baseline))
    gcn = learned.retrievers.get("gcn")
    assert gcn is None or isinstance(gcn, DenseRetriever)
    if gcn is not None and "shopsearch/gcn" in systems:
        score("shopsearch/gcn", gcn, index_bytes(gcn))
    if "shopsearch/fused" in systems:
        assert lexical is not None
        assert dense is not None
        assert gcn is not None
        fused = HybridRetriever(
            {"lexical": lexical, "dense": dense, "two_tower": two_tower, "gcn": gcn},
            per_source_k=DEPTH,
        )
        fit(fused, "fused", grid_steps=10)
        score("shopsearch/fused", fused, None)
    report.timing("total", time.perf_counter() - wall)
    return report


@SUITES.register()
class RetrievalSimSuite(Suite[RetrievalSimConfig]):
    """Candidate retrieval vs the simulator's true relevance: recall@100, recall@500, NDCG@10,
    index bytes per product, latency, per market and on long-tail queries.

    Example: shopsearch eval retrieval --dataset sim --workspace W --report r.json
    """

    name = "retrieval/sim"
    config_type = RetrievalSimConfig
    primary_metric = "ndcg@10"

    def run(self, config: RetrievalSimConfig, say: Say) -> Report:
        """:func:`run_retrieval_sim_suite`."""
        return run_retrieval_sim_suite(config, say)
