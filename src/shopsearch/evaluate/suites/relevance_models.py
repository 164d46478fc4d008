"""The relevance models of ``shopsearch eval relevance`` (with ``--train``).

Trained on the training judgments only (:func:`~shopsearch.relevance.distill.distill`): the
MiniLM cross-encoder on most training queries, stacked with the dense (MiniLM bi-encoder) cosine
and the BM25 score on the held-out training queries (``shopsearch/teacher``); the BERT2DNN
student on the teacher's labels of the judged training pairs and of the hybrid's top
``relevance_candidates`` for every training query (``shopsearch/bert2dnn``); the graph models
(``shopsearch/second-order``, ``shopsearch/first-order``) on the judged training pairs (their
grades) and those retrieved pairs (the teacher's labels: the negatives a full-catalog
re-ranking meets), the graph being the judged-relevant and the retrieved pairs, as a click log
would link queries and products, minus the edges the teacher scores irrelevant.

Each model is measured three ways, with bootstrap CIs over test queries where they apply:

* ``ndcg@10``: re-ranking the hybrid's top ``relevance_depth`` full-catalog candidates of each
  test query by the model's score (unjudged products gain 0);
* ``judged_ndcg@10``: re-ranking only the judged products of each test query;
* ``rmse``: of the predicted grade, the model's score mapped to grades by an isotonic fit on the
  held-out training queries' judgments;

and ``cost_ms_200``: p50/p99 milliseconds to score 200 candidates of one query on one thread.

``shopsearch/hybrid+relevance`` is what the engine serves: the hybrid's order with the
student's gate (candidates below the gate's threshold demoted below every other).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.isotonic import IsotonicRegression

from shopsearch.catalog.candidates import Candidates, ProductKey
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report, RunEvaluation, evaluate_run
from shopsearch.evaluate.suites.judged import JudgedSet
from shopsearch.progress import Say
from shopsearch.relevance.cross_encoder import TeacherConfig
from shopsearch.relevance.distill import (
    DistillConfig,
    Distilled,
    LabelledPairs,
    distill,
    split_queries,
)
from shopsearch.relevance.gate import gate_order
from shopsearch.relevance.lref import LREFConfig, LREFTeacher
from shopsearch.relevance.second_order import GraphRelevance, GraphRelevanceConfig, prune_edges
from shopsearch.relevance.student import StudentConfig
from shopsearch.relevance.threads import torch_threads
from shopsearch.retrieval.bm25s_baseline import BM25sBaseline
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.text.product_text import product_texts

F32 = npt.NDArray[np.float32]
PairScorer = Callable[[Sequence[str], Sequence[ProductKey]], F32]


def _dense_cosine(dense: DenseRetriever) -> PairScorer:
    def score(queries: Sequence[str], keys: Sequence[ProductKey]) -> F32:
        distinct = list(dict.fromkeys(queries))
        vectors = dense.encoder.encode_queries(distinct)
        row_of_query = {q: i for i, q in enumerate(distinct)}
        rows = [dense.rows_.row_of[k] for k in keys]
        q = vectors[[row_of_query[x] for x in queries]]
        return np.asarray(np.einsum("ij,ij->i", q, dense.vectors_[rows]), np.float32)

    return score


def _bm25_score(bm25: BM25sBaseline) -> PairScorer:
    import bm25s

    row_of = {k: i for i, k in enumerate(bm25.keys_)}

    def score(queries: Sequence[str], keys: Sequence[ProductKey]) -> F32:
        out = np.zeros(len(keys), np.float32)
        by_query: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            by_query.setdefault(q, []).append(i)
        for query, rows in by_query.items():
            tokens = bm25s.tokenize([query], stopwords="en", return_ids=False,
                                    show_progress=False)[0]  # fmt: skip
            if tokens:
                every = bm25.model_.get_scores(tokens)
                out[rows] = every[[row_of[keys[i]] for i in rows]]
        return out

    return score


def _cost(score_200: Callable[[str], object], queries: Sequence[str]) -> dict[str, float]:
    """p50/p99 milliseconds of ``score_200(query)`` on one thread."""
    times = []
    with torch_threads(1):
        for query in queries:
            start = time.perf_counter()
            score_200(query)
            times.append(1000 * (time.perf_counter() - start))
    return {"p50": float(np.percentile(times, 50)), "p99": float(np.percentile(times, 99)),
            "queries": len(times)}  # fmt: skip


def _teacher_folder(train: JudgedSet) -> str:
    """The teacher's checkpoint folder of these training judgments (one per training set)."""
    digest = hashlib.sha256(repr(sorted((q, sorted(j.items())) for q, j in train.qrels.items()))
                            .encode()).hexdigest()[:16]  # fmt: skip
    return f"relevance-teacher-{digest}"


#: The relevance models ``--relevance-models`` may name; the default is all but ``lref``.
RELEVANCE_MODELS = ("teacher", "bert2dnn", "second-order", "first-order", "lref")
DEFAULT_RELEVANCE_MODELS = ("teacher", "bert2dnn", "second-order", "first-order")
_NEEDS_DISTILL = frozenset({"teacher", "bert2dnn", "second-order", "first-order"})


def chosen_models(names: Sequence[str]) -> tuple[str, ...]:
    """The relevance models a ``--relevance-models`` list names (empty: the default ones).

    Raises:
        InvalidInputError: an unknown name, or ``none`` next to another name.
    """
    if not names:
        return DEFAULT_RELEVANCE_MODELS
    if tuple(names) == ("none",):
        return ()
    bad = [n for n in names if n not in RELEVANCE_MODELS]
    if bad:
        raise InvalidInputError(
            f"--relevance-models {','.join(names)}: unknown {bad}; use a comma list of "
            f"{', '.join(RELEVANCE_MODELS)}, or none"
        )
    return tuple(dict.fromkeys(names))


@dataclass
class _Bench:
    """What every relevance model is measured on (see the module docstring)."""

    queries: list[str]
    test: JudgedSet
    found: list[Candidates]  # the hybrid's top candidates of each test query
    hold: LabelledPairs  # the held-out training queries' judgments, for the isotonic map
    top: float  # the format's best grade (grades on [0, 1] times this)
    cost_queries: list[str]
    pool: list[ProductKey]  # 200 products every cost round scores
    n_resamples: int
    seed: int

    def judged_pairs(self) -> tuple[list[str], list[ProductKey], npt.NDArray[np.float64]]:
        qs = [q for q in self.queries for _ in self.test.qrels[q]]
        ks = [k for q in self.queries for k in self.test.qrels[q]]
        gs = np.asarray([g for q in self.queries for g in self.test.qrels[q].values()], float)
        return qs, ks, gs


def _measure(
    name: str,
    model: PairScorer,
    bench: _Bench,
    score: Callable[..., None],
    say: Say,
    depth: int | None = None,
    cost_rounds: int = 200,
    score_200: Callable[[str], object] | None = None,
) -> None:
    """Measure one model: re-rank the hybrid's top ``depth`` (default: all ``bench.found``),
    re-rank the judged products, RMSE of its isotonic grade, and the cost of 200 products."""
    found = bench.found if depth is None else [
        Candidates(c.keys[:depth], c.scores[:depth]) for c in bench.found
    ]  # fmt: skip
    pair_q = [q for q, c in zip(bench.queries, found, strict=True) for _ in c.keys]
    pair_k = [k for c in found for k in c.keys]
    say(f"{name}: scoring {len(pair_q)} candidates of {len(bench.queries)} test queries")
    start = time.perf_counter()
    scores = model(pair_q, pair_k)
    seconds = time.perf_counter() - start
    results, at = [], 0
    for c in found:
        part = scores[at : at + len(c.keys)]
        at += len(c.keys)
        order = np.argsort(-part, kind="stable")
        results.append(Candidates([c.keys[i] for i in order], part[order]))
    judged_q, judged_k, judged_g = bench.judged_pairs()
    say(f"{name}: scoring {len(judged_q)} judged test pairs and {len(bench.hold.grades)} "
        "held-out training pairs")  # fmt: skip
    judged = model(judged_q, judged_k)
    held_scores = model(bench.hold.queries, bench.hold.keys)
    iso = IsotonicRegression(out_of_bounds="clip").fit(
        held_scores, np.asarray(bench.hold.grades) * bench.top
    )
    rmse = float(np.sqrt(np.mean((iso.predict(judged) - judged_g) ** 2)))
    run, at = {}, 0
    for q in bench.queries:
        n = len(bench.test.qrels[q])
        part = judged[at : at + n]
        ks = list(bench.test.qrels[q])
        run[q] = [ks[i] for i in np.argsort(-part, kind="stable")]
        at += n
    judged_eval = evaluate_run(
        run, bench.test.qrels, metrics=("ndcg@10",), rel_threshold=bench.test.relevant_threshold,
        n_resamples=bench.n_resamples, seed=bench.seed,
    )  # fmt: skip
    more = RunEvaluation(
        judged_eval.query_ids,
        {"judged_ndcg@10": judged_eval.per_query["ndcg@10"]},
        {"judged_ndcg@10": judged_eval.metrics["ndcg@10"], "rmse": rmse},
        {"judged_ndcg@10": judged_eval.ci["ndcg@10"]},
    )
    pool = bench.pool
    one = score_200 or (lambda q: model([q] * len(pool), pool))
    cost = _cost(one, bench.cost_queries[:cost_rounds])
    extra: dict[str, Any] = {"cost_ms_200": cost}
    if depth is not None:
        extra["rerank"] = {"depth": depth}
    score(name, results, seconds, extra=extra, more=more)


def relevance_systems(
    settings: dict[str, Any],
    catalog: Any,
    train: JudgedSet,
    test: JudgedSet,
    queries: list[str],
    hybrid: HybridRetriever,
    dense: DenseRetriever,
    bm25: BM25sBaseline,
    report: Report,
    score: Callable[..., None],
    cache_dir: Path,
    say: Say,
) -> None:
    """Train the relevance models ``settings["models"]`` names (default: all but ``lref``) on
    ``train`` and add their systems to ``report``."""
    chosen = chosen_models(settings.get("models", ()))
    depth = int(settings.get("depth", 50))
    candidates_per_query = int(settings.get("candidates", 20))
    seed = int(settings.get("seed", 0))
    n_resamples = int(settings.get("n_resamples", 1000))
    keys = list(zip(catalog.column("domain").to_pylist(),
                    catalog.column("product_id").to_pylist(), strict=True))  # fmt: skip
    texts = dict(zip(keys, product_texts(catalog), strict=True))
    top = max(max(v.values(), default=0.0) for v in train.qrels.values()) or 1.0
    labelled = LabelledPairs(
        [q for q, judged in train.qrels.items() for _ in judged],
        [k for judged in train.qrels.values() for k in judged],
        [g / top for judged in train.qrels.values() for g in judged.values()],
        relevant_at=train.relevant_threshold / top,
    )
    config = DistillConfig(
        teacher=TeacherConfig(**settings.get("teacher", {})),
        student=StudentConfig(**settings.get("student", {})),
        seed=seed,
    )
    fit_queries, held = split_queries(
        labelled.queries, config.holdout_share, config.holdout_max, config.seed
    )
    hold = labelled.subset([i for i, q in enumerate(labelled.queries) if q in held])
    train_mean = float(np.mean([g for j in train.qrels.values() for g in j.values()]))
    test_gains = np.asarray([g for j in test.qrels.values() for g in j.values()])
    report.config["relevance"] = {
        "models": list(chosen), "depth": depth, "candidates_per_query": candidates_per_query,
        "test_rmse_of_training_mean": float(np.sqrt(np.mean((test_gains - train_mean) ** 2))),
    }  # fmt: skip
    models: dict[str, PairScorer] = {}
    distilled = None
    if _NEEDS_DISTILL & set(chosen):
        distilled = _distilled_models(settings, chosen, config, labelled, texts, train, hybrid,
                                      dense, bm25, report, models, cache_dir, say)  # fmt: skip
        hold = distilled.holdout
    lref = None
    if "lref" in chosen:
        lref = _fit_lref(settings, catalog, keys, labelled, fit_queries, texts, report, say)
        models["shopsearch/lref"] = lambda qs, ks: lref.score(qs, [texts[k] for k in ks])

    say(f"the hybrid's top {depth} for {len(queries)} test queries, re-ranked by each model")
    found = hybrid.retrieve_many(queries, depth)
    pool = [k for c in found for k in c.keys][:200]
    cost_queries = queries[:: max(1, len(queries) // 200)][:200]
    bench = _Bench(queries, test, found, hold, top, cost_queries, pool, n_resamples, seed)
    for name, model in models.items():
        if name == "shopsearch/bert2dnn" and distilled is not None:
            _measure(name, model, bench, score, say,
                     score_200=_student_200(distilled, [texts[k] for k in pool]))  # fmt: skip
        elif name == "shopsearch/lref":
            lref_depth = int(settings.get("lref_depth", 10))
            _measure(name, model, bench, score, say, depth=lref_depth,
                     cost_rounds=int(settings.get("lref_cost_rounds", 5)))  # fmt: skip
        else:
            rounds = 20 if name == "shopsearch/teacher" else 200
            _measure(name, model, bench, score, say, cost_rounds=rounds)
    if distilled is not None and "bert2dnn" in chosen:
        _gated(distilled, hybrid, queries, texts, score)


def _student_200(distilled: Distilled, pool_texts: list[str]) -> Callable[[str], object]:
    """The student scoring the cost pool as it serves: product vectors precomputed."""
    student = distilled.student
    vectors = student.product_vectors(pool_texts)
    return lambda query: student.score_vectors(query, vectors)


def _distilled_models(
    settings: dict[str, Any],
    chosen: tuple[str, ...],
    config: DistillConfig,
    labelled: LabelledPairs,
    texts: dict[ProductKey, str],
    train: JudgedSet,
    hybrid: HybridRetriever,
    dense: DenseRetriever,
    bm25: BM25sBaseline,
    report: Report,
    models: dict[str, PairScorer],
    cache_dir: Path,
    say: Say,
) -> Distilled:
    """Distil (teacher, stack, student) and fit the chosen graph models; add the chosen ones
    to ``models``."""
    candidates_per_query = int(settings.get("candidates", 20))
    train_queries = sorted(train.qrels)
    say(f"retrieving the hybrid's top {candidates_per_query} for {len(train_queries)} "
        "training queries (the student's unlabeled pairs)")  # fmt: skip
    unlabeled = [(q, k) for q, found in zip(
        train_queries, hybrid.retrieve_many(train_queries, candidates_per_query), strict=True
    ) for k in found.keys]  # fmt: skip
    side = [_dense_cosine(dense), _bm25_score(bm25)]
    with report.timer("fit/relevance_distill"):
        distilled = distill(labelled, texts, unlabeled, side, ["dense_cosine", "bm25"], config,
                            checkpoint_dir=cache_dir / _teacher_folder(train), say=say)  # fmt: skip
    report.config["relevance"].update(distilled.report)
    if "teacher" in chosen:
        models["shopsearch/teacher"] = lambda qs, ks: distilled.teacher_scores(qs, ks, texts,
                                                                                side)  # fmt: skip
    if "bert2dnn" in chosen:
        student = distilled.student
        models["shopsearch/bert2dnn"] = lambda qs, ks: student.score(qs, [texts[k] for k in ks])
    orders = [o for o, name in ((2, "second-order"), (1, "first-order")) if name in chosen]
    if not orders:
        return distilled
    say("graph relevance: judged-relevant and retrieved pairs as the graph, pruned by the teacher")
    labels = distilled.labels
    judged_pairs = list(zip(labelled.queries, labelled.keys, strict=True))
    relevant = [p for p, g in zip(judged_pairs, labelled.grades, strict=True)
                if g >= labelled.relevant_at - 1e-9]  # fmt: skip
    judged_set = set(judged_pairs)
    retrieved = [p for p in dict.fromkeys(unlabeled) if p not in judged_set]
    edges = list(dict.fromkeys(relevant + retrieved))
    kept = prune_edges(edges, [labels[e] for e in edges], labelled.relevant_at)
    report.config["relevance"]["graph"] = {
        "judged_relevant_edges": len(relevant), "retrieved_edges": len(retrieved),
        "kept_by_teacher": len(kept),
    }  # fmt: skip
    # judged pairs with their grades, retrieved ones with the teacher's labels (the negatives a
    # full-catalog re-ranking meets)
    graph_pairs = LabelledPairs(
        labelled.queries + [q for q, _ in retrieved],
        labelled.keys + [k for _, k in retrieved],
        labelled.grades + [labels[p] for p in retrieved],
        labelled.relevant_at,
    )
    for order in orders:
        name = "second-order" if order == 2 else "first-order"
        with report.timer(f"fit/{name.replace('-', '_')}"):
            graph = GraphRelevance(GraphRelevanceConfig(order=order, seed=config.seed,
                                                        **settings.get("graph", {})))  # fmt: skip
            graph.fit(graph_pairs, texts, kept)
        report.config["relevance"]["graph"].update(graph.graph_size())
        models[f"shopsearch/{name}"] = graph.score
    return distilled


def _fit_lref(
    settings: dict[str, Any],
    catalog: Any,
    keys: list[ProductKey],
    labelled: LabelledPairs,
    fit_queries: set[str],
    texts: dict[ProductKey, str],
    report: Report,
    say: Say,
) -> LREFTeacher:
    """LREF on the cross-encoder teacher's training queries (the same ``split_queries``)."""
    fit = labelled.subset([i for i, q in enumerate(labelled.queries) if q in fit_queries])
    leaves = [c[-1] if c else "" for c in catalog.column("category").to_pylist()]
    categories = {k: leaf for k, leaf in zip(keys, leaves, strict=True) if leaf}
    lref_config = LREFConfig(**settings.get("lref", {}))
    say(f"lref: {len(fit.grades)} judged pairs of {len(fit_queries)} queries (the teacher's)")
    with report.timer("fit/lref"):
        lref = LREFTeacher(lref_config).fit(fit, texts, say, categories)
    report.config["relevance"]["lref"] = {
        **lref.report_, "config": asdict(lref_config),
        "rerank_depth": int(settings.get("lref_depth", 10)),
    }  # fmt: skip
    return lref


def _gated(
    distilled: Distilled,
    hybrid: HybridRetriever,
    queries: list[str],
    texts: dict[ProductKey, str],
    score: Callable[..., None],
) -> None:
    """``shopsearch/hybrid+relevance``: the hybrid's top 100 with the student's gate."""
    student = distilled.student
    gated, demoted = [], 0
    threshold = distilled.gate.threshold
    start = time.perf_counter()
    for query, c in zip(queries, hybrid.retrieve_many(queries, 100), strict=True):
        vectors = student.product_vectors([texts[k] for k in c.keys])
        s = student.score_vectors(query, vectors) if len(c.keys) else np.zeros(0, np.float32)
        order, below = gate_order(s, threshold, "demote")
        demoted += below
        gated.append(Candidates([c.keys[i] for i in order], c.scores[order]))
    score("shopsearch/hybrid+relevance", gated, time.perf_counter() - start,
          extra={"gate": {"threshold": threshold,
                          "demoted_share": demoted / max(1, sum(map(len, gated)))}})  # fmt: skip


__all__ = ["DEFAULT_RELEVANCE_MODELS", "RELEVANCE_MODELS", "chosen_models", "relevance_systems"]
