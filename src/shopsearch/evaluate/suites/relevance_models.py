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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.isotonic import IsotonicRegression

from shopsearch.catalog.candidates import Candidates, ProductKey
from shopsearch.evaluate.report import Report, RunEvaluation, evaluate_run
from shopsearch.evaluate.suites.judged import JudgedSet
from shopsearch.progress import Say
from shopsearch.relevance.cross_encoder import TeacherConfig
from shopsearch.relevance.distill import DistillConfig, LabelledPairs, distill
from shopsearch.relevance.gate import gate_order
from shopsearch.relevance.second_order import GraphRelevance, GraphRelevanceConfig, prune_edges
from shopsearch.relevance.student import StudentConfig
from shopsearch.retrieval.bm25s_baseline import BM25sBaseline
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.text.product_text import product_texts

F32 = npt.NDArray[np.float32]
PairScorer = Callable[[Sequence[str], Sequence[ProductKey]], F32]


@contextmanager
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    with _one_thread():
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
    """Train the relevance models on ``train`` and add their systems to ``report``."""
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
    train_queries = sorted(train.qrels)
    say(f"retrieving the hybrid's top {candidates_per_query} for {len(train_queries)} "
        "training queries (the student's unlabeled pairs)")  # fmt: skip
    unlabeled = [(q, k) for q, found in zip(
        train_queries, hybrid.retrieve_many(train_queries, candidates_per_query), strict=True
    ) for k in found.keys]  # fmt: skip
    config = DistillConfig(
        teacher=TeacherConfig(**settings.get("teacher", {})),
        student=StudentConfig(**settings.get("student", {})),
        seed=seed,
    )
    side = [_dense_cosine(dense), _bm25_score(bm25)]
    with report.timer("fit/relevance_distill"):
        distilled = distill(labelled, texts, unlabeled, side, ["dense_cosine", "bm25"], config,
                            checkpoint_dir=cache_dir / _teacher_folder(train), say=say)  # fmt: skip
    train_mean = float(np.mean([g for j in train.qrels.values() for g in j.values()]))
    test_gains = np.asarray([g for j in test.qrels.values() for g in j.values()])
    rmse_of_mean = float(np.sqrt(np.mean((test_gains - train_mean) ** 2)))
    report.config["relevance"] = {**distilled.report, "depth": depth,
                                  "test_rmse_of_training_mean": rmse_of_mean,
                                  "candidates_per_query": candidates_per_query}  # fmt: skip
    hold = distilled.holdout

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
    graph_settings = settings.get("graph", {})
    models: dict[str, PairScorer] = {}
    with report.timer("fit/second_order"):
        second = GraphRelevance(GraphRelevanceConfig(order=2, seed=seed, **graph_settings))
        second.fit(graph_pairs, texts, kept)
    with report.timer("fit/first_order"):
        first = GraphRelevance(GraphRelevanceConfig(order=1, seed=seed, **graph_settings))
        first.fit(graph_pairs, texts, kept)
    report.config["relevance"]["graph"].update(second.graph_size())

    student = distilled.student
    models = {
        "shopsearch/teacher": lambda qs, ks: distilled.teacher_scores(qs, ks, texts, side),
        "shopsearch/bert2dnn": lambda qs, ks: student.score(qs, [texts[k] for k in ks]),
        "shopsearch/second-order": second.score,
        "shopsearch/first-order": first.score,
    }
    say(f"the hybrid's top {depth} for {len(queries)} test queries, re-ranked by each model")
    found = hybrid.retrieve_many(queries, depth)
    pair_q = [q for q, c in zip(queries, found, strict=True) for _ in c.keys]
    pair_k = [k for c in found for k in c.keys]
    judged_q = [q for q in queries for _ in test.qrels[q]]
    judged_k = [k for q in queries for k in test.qrels[q]]
    judged_g = np.asarray([g for q in queries for g in test.qrels[q].values()])
    cost_queries = queries[:: max(1, len(queries) // 200)][:200]
    pool = [k for c in found for k in c.keys][:200]
    student_vectors = student.product_vectors([texts[k] for k in pool])
    for name, model in models.items():
        say(f"{name}: scoring")
        start = time.perf_counter()
        scores = model(pair_q, pair_k)
        seconds = time.perf_counter() - start
        results, at = [], 0
        for c in found:
            part = scores[at : at + len(c.keys)]
            at += len(c.keys)
            order = np.argsort(-part, kind="stable")
            results.append(Candidates([c.keys[i] for i in order], part[order]))
        judged = model(judged_q, judged_k)
        held_scores = model(hold.queries, hold.keys)
        iso = IsotonicRegression(out_of_bounds="clip").fit(
            held_scores, np.asarray(hold.grades) * top
        )
        rmse = float(np.sqrt(np.mean((iso.predict(judged) - judged_g) ** 2)))
        run, at = {}, 0
        for q in queries:
            n = len(test.qrels[q])
            part = judged[at : at + n]
            ks = list(test.qrels[q])
            run[q] = [ks[i] for i in np.argsort(-part, kind="stable")]
            at += n
        judged_eval = evaluate_run(
            run, test.qrels, metrics=("ndcg@10",), rel_threshold=test.relevant_threshold,
            n_resamples=n_resamples, seed=seed,
        )  # fmt: skip
        more = RunEvaluation(
            judged_eval.query_ids,
            {"judged_ndcg@10": judged_eval.per_query["ndcg@10"]},
            {"judged_ndcg@10": judged_eval.metrics["ndcg@10"], "rmse": rmse},
            {"judged_ndcg@10": judged_eval.ci["ndcg@10"]},
        )
        rounds = cost_queries if name != "shopsearch/teacher" else cost_queries[:20]
        if name == "shopsearch/bert2dnn":
            cost = _cost(lambda q: student.score_vectors(q, student_vectors), rounds)
        else:
            cost = _cost(lambda q, m=model: m([q] * len(pool), pool), rounds)  # type: ignore[misc]
        score(name, results, seconds, extra={"cost_ms_200": cost}, more=more)
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


__all__ = ["relevance_systems"]
