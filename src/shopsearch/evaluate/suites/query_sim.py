"""``shopsearch eval query --dataset sim``: query understanding against the simulator's truth.

**Split by time.** The last ``test_fraction`` of the workspace's requests are tested; the query
components learn only from the earlier ones (:meth:`QueryData.from_workspace
<shopsearch.query.data.QueryData.from_workspace>` on the training request ids). At most
``max_test_requests`` test requests (a seeded sample) are scored.

**Systems.** Each system is a set of query components (:data:`SYSTEMS`; names of
:data:`~shopsearch.query.base.QUERY_COMPONENTS`) fitted on the training requests and run in the
``query`` stage of one engine built in memory over the workspace's catalog (lexical + MiniLM
dense, weighted fusion fitted on the training requests' clicks, no ranking model): the same
engine for every system, so only query understanding differs. ``baseline/none`` has no
component. A system whose components are not all registered is left out with a note.

**Metrics.** For every system, end to end: NDCG@10 of the page the engine returns against the
simulator's true grades (0–3), recall@100 of products of grade ≥ ``rel_threshold``, on all
test requests and on the slices ``typo`` (the query was mistyped), ``abbreviation`` (it was
abbreviated) and ``long_tail`` (its text was typed at most once in training), with bootstrap
95% CIs. For a system that changes the query text (a speller): ``correction_accuracy``, the
share of mistyped queries turned into what the user meant to type (the truth's
``query_clean``), and ``false_correction_rate``, the share of queries typed as meant that were
changed. For a system that predicts categories: ``intent_top1_acc`` (the most likely category is
the truth's leaf) and ``intent_micro_f1`` (categories at least ``intent_threshold`` likely
against the truth's leaf, micro-averaged).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from shopsearch.catalog.candidates import ProductKey
from shopsearch.catalog.lookup import ProductLookup
from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.long_tail import rare_queries
from shopsearch.evaluate.metrics import bootstrap_ci
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.evaluate.sim_truth import truth_qrels
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stages.query import QueryStage
from shopsearch.progress import Say
from shopsearch.query.base import QUERY_COMPONENTS
from shopsearch.query.data import QueryData
from shopsearch.query.models import QueryModels
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.simulate.truth import GroundTruth
from shopsearch.store.workspace import Workspace
from shopsearch.text.encoders import MiniLMEncoder

#: System name → the query components it runs (``baseline/none``: none).
SYSTEMS: dict[str, tuple[str, ...]] = {
    "baseline/none": (),
    "shopsearch/normalize": ("normalize",),
    "shopsearch/spell": ("spell",),
    "baseline/symspell": ("symspell",),
    "shopsearch/mman": ("intent",),
    "baseline/query-majority": ("query-majority",),
    "baseline/linear": ("intent-linear",),
    "baseline/minilm-nearest": ("minilm-nearest",),
    "shopsearch/rewrite": ("rewrite",),
    "shopsearch/rewrite-forward": ("rewrite-forward",),
    "baseline/rm3": ("rm3",),
    "shopsearch/query": ("spell", "intent", "rewrite"),
}
METRICS = ("ndcg@10", "recall@100")
SLICES = ("typo", "abbreviation", "long_tail")
PAGE = 100


@dataclass
class QuerySimConfig:
    """Inputs of the simulated query-understanding suite."""

    workspace: Annotated[
        Path,
        option(
            "Simulated workspace (tables only read; vectors cached)", flags=("--workspace", "-w")
        ),
    ]
    test_fraction: Annotated[
        float, option("Share of the latest requests tested", low=0, high=1)
    ] = 0.2
    max_test_requests: Annotated[
        int, option("Most test requests scored (seeded sample)", low=1)
    ] = 2000
    rel_threshold: Annotated[
        int, option("True grade (0-3) at which a product counts for recall")
    ] = 2
    systems: Annotated[tuple[str, ...], option("Comma list of systems", default_text="all")] = ()
    cache_dir: Annotated[
        Path | None, option("MiniLM embedding cache", default_text="W/cache/embeddings")
    ] = None
    intent_threshold: float = 0.3
    long_tail_max_count: int = 1
    n_resamples: int = 200
    seed: Annotated[int, option("Seed of sampling and bootstrap")] = 0


@dataclass
class QueryTest:
    """The scored test requests, with what their users meant."""

    frame: pd.DataFrame  # request_id, domain, query, query_clean, typo, abbreviated, category,
    #                      long_tail
    qrels: dict[str, dict[ProductKey, float]] = field(default_factory=dict)

    def ids(self, where: str | None = None) -> list[str]:
        """The request ids of all scored requests, or of one slice."""
        frame = self.frame if where is None else self.frame[self.frame[_column(where)]]
        return frame["request_id"].tolist()


def run_query_sim_suite(config: QuerySimConfig, say: Say) -> Report:
    """Fit, run and score every system (see the module docstring)."""
    workspace = Workspace.open(config.workspace)
    truth = GroundTruth.load(workspace)
    train_ids, test_ids = _split(workspace, config.test_fraction)
    data = QueryData.from_workspace(workspace, train_ids)
    products = workspace.table("products")
    test = _test_set(workspace, truth, products, data, test_ids, config)
    if test.frame.empty:
        raise InvalidInputError("no test request has a relevant product; simulate more requests")
    report = Report(
        suite="query",
        primary_metric=QuerySimSuite.primary_metric,
        dataset={
            "name": "sim",
            "workspace": str(config.workspace),
            "products": products.num_rows,
            "split": "by time",
            "train_requests": len(train_ids),
            "test_requests": len(test_ids),
            "scored_test_requests": len(test.frame),
            **{f"{s}_test_requests": int(test.frame[_column(s)].sum()) for s in SLICES},
        },
        config={
            "seed": config.seed,
            "page": PAGE,
            "rel_threshold": config.rel_threshold,
            "intent_threshold": config.intent_threshold,
        },
    )
    say(f"{len(train_ids)} training and {len(test.frame)} scored test requests")
    engine = _engine(workspace, products, data, config, report, say)
    chosen = config.systems or tuple(SYSTEMS)
    unknown = [s for s in chosen if s not in SYSTEMS]
    if unknown:
        raise InvalidInputError(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    left_out: dict[str, str] = {}
    for name in chosen:
        missing = [c for c in SYSTEMS[name] if c not in QUERY_COMPONENTS]
        if missing:
            left_out[name] = f"components not registered: {', '.join(missing)}"
            continue
        say(f"fitting and running {name}")
        with report.timer(f"fit/{name}"):
            models = QueryModels([QUERY_COMPONENTS.get(c)().fit(data) for c in SYSTEMS[name]])
        _score(name, models, engine, test, config, report)
    if left_out:
        report.config["left_out"] = left_out
    return report


def _split(workspace: Workspace, test_fraction: float) -> tuple[list[str], list[str]]:
    if not 0 < test_fraction < 1:
        raise InvalidInputError(f"test_fraction={test_fraction}: use 0 < test_fraction < 1")
    ids = [
        r
        for (r,) in workspace.connect()
        .execute("SELECT request_id FROM requests ORDER BY timestamp, request_id")
        .fetchall()
    ]
    if len(ids) < 10:
        raise InvalidInputError(
            f"workspace {workspace.root} has {len(ids)} logged requests; simulate at least 10"
        )
    cut = len(ids) - max(1, round(test_fraction * len(ids)))
    return ids[:cut], ids[cut:]


def _test_set(
    workspace: Workspace,
    truth: GroundTruth,
    products: Any,
    data: QueryData,
    test_ids: Sequence[str],
    config: QuerySimConfig,
) -> QueryTest:
    sample = list(test_ids)
    if len(sample) > config.max_test_requests:
        sample = sorted(random.Random(config.seed).sample(sample, config.max_test_requests))
    table = truth.requests.to_pandas().set_index("request_id").loc[sample].reset_index()
    if table["query_clean"].isna().any():
        raise InvalidInputError(
            f"workspace {workspace.root} was simulated before the truth kept each query as "
            "meant; simulate it again to evaluate query understanding"
        )
    qrels = truth_qrels(truth, products, sample)
    scored = {
        r for r, judged in qrels.items() if any(g >= config.rel_threshold for g in judged.values())
    }
    frame = table[table["request_id"].isin(scored)].copy()
    rare = set(
        rare_queries(list(data.queries["query"]), list(frame["query"]), config.long_tail_max_count)
    )
    frame["long_tail"] = frame["query"].isin(rare)
    frame["category"] = [CATEGORY_SEPARATOR.join(c) for c in frame["category"]]
    columns = [
        "request_id",
        "domain",
        "query",
        "query_clean",
        "typo",
        "abbreviated",
        "category",
        "long_tail",
    ]
    return QueryTest(
        frame[columns].reset_index(drop=True), {r: qrels[r] for r in frame["request_id"]}
    )


def _engine(
    workspace: Workspace,
    products: Any,
    data: QueryData,
    config: QuerySimConfig,
    report: Report,
    say: Say,
) -> Engine:
    """Lexical + MiniLM dense over the catalog, fusion weights fitted on training clicks."""
    cache = config.cache_dir or workspace.dir("cache") / "embeddings"
    say("indexing the catalog (MiniLM vectors cached by content hash)")
    with report.timer("index"):
        lexical = LexicalRetriever().index(products)
        dense = DenseRetriever(MiniLMEncoder(), cache_dir=cache).index(products)
        dense.fit_matches()
        hybrid = HybridRetriever({"lexical": lexical, "dense": dense}, per_source_k=PAGE)
    clicked = data.outcomes.groupby("query")
    qrels: dict[str, dict[ProductKey, float]] = {
        str(q): {
            (d, p): float(s)
            for d, p, s in zip(g["domain"], g["product_id"], g["stage"], strict=True)
        }
        for q, g in clicked
    }
    queries = sorted(qrels)[:1000]
    if queries:
        with report.timer("fit/fusion"):
            hybrid.fit_fusion(queries, [qrels[q] for q in queries])
    report.config["fusion_weights"] = dict(hybrid.weighting_.weights_)
    return Engine(hybrid, ProductLookup(products), Settings())


def _score(
    name: str,
    models: QueryModels,
    engine: Engine,
    test: QueryTest,
    config: QuerySimConfig,
    report: Report,
) -> None:
    """Run the test queries through the engine with ``models`` as its query stage."""
    served = Engine(
        engine.retrieval, engine.products, engine.settings, stages={"query": QueryStage(models)}
    )
    run: dict[str, list[ProductKey]] = {}
    texts: list[str] = []
    intents: list[list[tuple[str, float]]] = []
    start = time.perf_counter()
    for row in test.frame.itertuples(index=False):
        response = served.search(SearchParams(str(row.query), str(row.domain), size=PAGE))
        run[str(row.request_id)] = [(i.domain, i.product_id) for i in response.items]
        texts.append(response.query)
        intents.append(response.intents)
    seconds = time.perf_counter() - start
    evaluation = evaluate_run(
        run,
        test.qrels,
        metrics=METRICS,
        rel_threshold=config.rel_threshold,
        query_ids=test.ids(),
        n_resamples=config.n_resamples,
        seed=config.seed,
    )
    extra: dict[str, Any] = {"latency": {"ms_per_query": 1000 * seconds / max(len(run), 1)}}
    for where in SLICES:
        ids = test.ids(where)
        if ids:
            sliced = evaluate_run(
                run,
                test.qrels,
                metrics=METRICS,
                rel_threshold=config.rel_threshold,
                query_ids=ids,
                n_resamples=config.n_resamples,
                seed=config.seed,
            )
            extra[where] = {
                **sliced.metrics,
                "requests": len(ids),
                "ci95": {k: list(v) for k, v in sliced.ci.items()},
            }
    metrics = dict(evaluation.metrics)
    ci = dict(evaluation.ci)
    per_request: dict[str, npt.NDArray[np.float64]] = {}
    if _changes_text(test.frame, texts):
        per_request.update(_spelling(test.frame, texts))
    if any(intents):
        top1, f1 = _intent(test.frame, intents, config.intent_threshold)
        per_request["intent_top1_acc"] = top1
        metrics["intent_micro_f1"] = f1
        for where in SLICES:
            sliced = top1[test.frame[_column(where)].to_numpy(bool)]
            if len(sliced):
                extra[where]["intent_top1_acc"] = float(sliced.mean())
    for metric, values in per_request.items():
        metrics[metric] = float(values.mean())
        ci[metric] = bootstrap_ci(values, n_resamples=config.n_resamples, seed=config.seed)
    report.add_system(name, metrics, ci=ci, extra=extra)


def _changes_text(frame: pd.DataFrame, texts: Sequence[str]) -> bool:
    return any(t != q for t, q in zip(texts, frame["query"], strict=True))


def _spelling(frame: pd.DataFrame, texts: Sequence[str]) -> dict[str, npt.NDArray[np.float64]]:
    """Per request: corrected as meant (mistyped requests: ``correction_accuracy``); changed
    though typed as meant (``false_correction_rate``)."""
    searched = np.array([_norm(t) for t in texts], dtype=object)
    typed = np.array([_norm(q) for q in frame["query"]], dtype=object)
    meant = np.array([_norm(q) for q in frame["query_clean"]], dtype=object)
    typo = frame["typo"].to_numpy(bool)
    right = ~typo & (typed == meant)
    out: dict[str, npt.NDArray[np.float64]] = {}
    if typo.any():
        out["correction_accuracy"] = (searched[typo] == meant[typo]).astype(np.float64)
    if right.any():
        out["false_correction_rate"] = (searched[right] != typed[right]).astype(np.float64)
    return out


def _intent(
    frame: pd.DataFrame, intents: Sequence[Sequence[tuple[str, float]]], threshold: float
) -> tuple[npt.NDArray[np.float64], float]:
    """Per request whether the most likely category is the truth's leaf, and the micro-F1 of
    the categories at least ``threshold`` likely."""
    truth = list(frame["category"])
    top1 = [bool(p) and p[0][0] == t for p, t in zip(intents, truth, strict=True)]
    hits = predicted = 0
    for found, leaf in zip(intents, truth, strict=True):
        chosen = {c for c, prob in found if prob >= threshold}
        predicted += len(chosen)
        hits += leaf in chosen
    precision = hits / predicted if predicted else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return np.asarray(top1, np.float64), f1


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def _column(where: str) -> str:
    return {"typo": "typo", "abbreviation": "abbreviated", "long_tail": "long_tail"}[where]


@SUITES.register()
class QuerySimSuite(Suite[QuerySimConfig]):
    """Query understanding (spelling, intent, rewriting) against the simulator's truth: each
    system run end to end in one engine, with correction and intent metrics.

    Example: shopsearch eval query --dataset sim --workspace W --report r.json
    """

    name = "query/sim"
    config_type = QuerySimConfig
    primary_metric = "ndcg@10"

    def run(self, config: QuerySimConfig, say: Say) -> Report:
        """See :func:`run_query_sim_suite`."""
        return run_query_sim_suite(config, say)


__all__ = ["SYSTEMS", "QuerySimConfig", "QuerySimSuite", "run_query_sim_suite"]
