"""The ``prerank`` part of ``eval stages``: HCCP against three pre-ranking baselines and the
full ranker, trained from a logged stream and measured end to end.

1. **The logged stream.** The workspace's current bundle (it must have a ranking model) serves
   ``prerank_sessions`` replayed simulated sessions (seed ``seed + 1000``) as the logging
   engine: retrieval passes ``prerank_pool`` candidates on, no pre-ranking model keeps the
   first ``prerank_keep`` in retrieval's order, the ranking model orders those. The stream of
   every request is recorded (:class:`~shopsearch.evaluate.suites.online.EnginePolicy`), with
   what the users were shown and did.
2. **Training.** The same light model is trained three ways on that stream
   (:mod:`shopsearch.prerank.hccp`): ``shopsearch/hccp``, ``baseline/prerank-distill``,
   ``baseline/prerank-exposed``.
3. **Offline, on other requests.** The requests of a second replay (seed ``seed + 2000``,
   ``prerank_test_sessions``) are searched once up to pre-ranking; then each system chooses
   ``prerank_keep`` of the pool, the ranking model orders them and the top 10 are scored
   against the simulator's true grades (``ndcg@10``). ``baseline/no-prerank`` keeps
   retrieval's first ``prerank_keep``; ``baseline/full-rank`` lets the ranking model score the
   whole pool. ``consistency``: the share of the full ranker's top 10 inside the system's
   ``prerank_keep``. ``cost_ms``: the pre-ranking stage's milliseconds per request (one
   thread); ``rank_ms``: the ranking stage's, after it; ``stack_ms``: both (the cost to
   compare with ``full-rank``'s). CIs: bootstrap over requests.
4. **Online.** The same ``prerank_online_sessions`` sessions (seed ``seed + 3000``) are
   replayed against the engine with each pre-ranker and with the full ranker; clicks and
   purchases per 1,000 requests with CIs and the paired difference against ``full-rank``
   (:func:`~shopsearch.evaluate.suites.online.compare`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from shopsearch.config import Settings, load_settings
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.metrics import bootstrap_ci, paired_bootstrap_diff
from shopsearch.evaluate.report import Report, evaluate_run
from shopsearch.evaluate.sim_truth import truth_qrels
from shopsearch.evaluate.suites.online import EnginePolicy, compare, session_totals
from shopsearch.evaluate.suites.stages import StagesConfig
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stages.prerank import PrerankStage
from shopsearch.pipeline.state import SearchState
from shopsearch.prerank.base import PrerankConfig
from shopsearch.prerank.hccp import LightPreranker
from shopsearch.prerank.samples import catalog_frame, level_counts, product_stats, stream_lists
from shopsearch.progress import Say
from shopsearch.simulate.persist import load_world
from shopsearch.simulate.replay import replay
from shopsearch.store.workspace import Workspace

#: The trained systems: name → objective.
TRAINED: dict[str, str] = {
    "shopsearch/hccp": "hccp",
    "baseline/prerank-distill": "distill",
    "baseline/prerank-exposed": "exposed",
}
NO_PRERANK, FULL_RANK = "baseline/no-prerank", "baseline/full-rank"


@dataclass
class _Measured:
    """Per system, aligned over the test requests."""

    run: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    consistency: list[float] = field(default_factory=list)
    cost_ms: list[float] = field(default_factory=list)
    rank_ms: list[float] = field(default_factory=list)


def _settings(config: StagesConfig, workspace: Workspace) -> Settings:
    settings = load_settings(workspace.root)
    settings.retrieval.candidates = config.prerank_pool
    settings.pipeline.prerank_keep = config.prerank_keep
    settings.pipeline.stream_sample = 0.0
    settings.prerank.enabled = False  # the logging engine: retrieval's order
    return settings


def measure(config: StagesConfig, report: Report, say: Say) -> None:
    """Train, evaluate and add the pre-ranking systems (see the module docstring).

    Raises:
        InvalidInputError: the current bundle has no ranking model, or the pool is not
            larger than what is kept.
    """
    if config.prerank_keep >= config.prerank_pool:
        raise InvalidInputError(
            f"prerank_keep={config.prerank_keep} is not below prerank_pool="
            f"{config.prerank_pool}; pre-ranking needs a larger pool than it keeps"
        )
    ws = Workspace.open(config.workspace)
    settings = _settings(config, ws)
    engine = Engine.load(ws, settings)
    if engine.ranking is None:
        raise InvalidInputError(
            f"the current bundle of {ws.root} has no ranking model to pre-rank for; train one "
            f"with 'shopsearch train -w {ws.root} --stage ranking'"
        )
    world = load_world(ws.dir("ground_truth"))
    say(f"prerank: logging the stream of {config.prerank_sessions} sessions")
    with report.timer("prerank/log"):
        logged = replay(
            world, EnginePolicy(engine, 1.0), config.prerank_sessions, config.seed + 1000,
            keep_logs=True,
        )  # fmt: skip
    assert logged.logs is not None
    logs = logged.logs
    lists = stream_lists(logs.stream, logs.requests, logs.impressions, logs.interactions)
    stats = product_stats(
        _concat(ws.table("impressions"), logs.impressions),
        _concat(ws.table("interactions"), logs.interactions),
    )
    products = catalog_frame(ws)
    models: dict[str, LightPreranker] = {}
    for name, objective in TRAINED.items():
        say(f"prerank: training {name} on {len(lists)} logged requests")
        with report.timer(f"prerank/train/{name}"):
            cfg = PrerankConfig(
                objective=objective,  # type: ignore[arg-type]
                epochs=config.prerank_epochs,
                seed=config.seed,
            )
            models[name] = LightPreranker(cfg).fit(lists, products, stats)
    say(f"prerank: offline evaluation on {config.prerank_test_sessions} other sessions")
    with report.timer("prerank/offline"):
        test = replay(
            world, EnginePolicy(engine), config.prerank_test_sessions, config.seed + 2000,
            keep_logs=True,
        )  # fmt: skip
        assert test.logs is not None
        requests = test.logs.requests.to_pandas()
        measured = _offline(engine, models, requests, config)
    qrels = truth_qrels(test.truth, ws.table("products"), requests["request_id"].tolist())
    online = _online(config, ws, settings, models, say, report)
    reference = measured[FULL_RANK].consistency
    for name, got in measured.items():
        evaluation = evaluate_run(
            {rid: keys for rid, keys in got.run.items()},
            qrels,
            metrics=("ndcg@10",),
            n_resamples=config.n_resamples,
            seed=config.seed,
            query_ids=list(got.run),
        )
        metrics = {
            "ndcg@10": evaluation.metrics["ndcg@10"],
            "consistency": float(np.mean(got.consistency)),
            "cost_ms": float(np.mean(got.cost_ms)),
            "cost_p99_ms": float(np.percentile(got.cost_ms, 99)),
            "rank_ms": float(np.mean(got.rank_ms)),
            "stack_ms": float(np.mean(got.cost_ms) + np.mean(got.rank_ms)),
            **online.metrics[name],
        }
        ci = {
            "ndcg@10": evaluation.ci["ndcg@10"],
            "consistency": bootstrap_ci(got.consistency, config.n_resamples, seed=config.seed),
            **online.ci[name],
        }
        extra: dict[str, object] = {"part": {"name": "prerank"}}
        if name != FULL_RANK:
            diff = paired_bootstrap_diff(
                got.consistency, reference, config.n_resamples, seed=config.seed
            )
            extra["consistency_minus_full_rank"] = diff._asdict()
        extra["online_minus_full_rank"] = online.diff.get(name, {})
        report.add_system(name, metrics, ci, extra)
    report.dataset.update(
        {
            "prerank/logged_requests": len(lists),
            "prerank/levels": level_counts(lists),
            "prerank/test_requests": len(requests),
        }
    )
    report.config["prerank"] = {
        "pool": config.prerank_pool,
        "keep": config.prerank_keep,
        "sessions": config.prerank_sessions,
        "test_sessions": config.prerank_test_sessions,
        "online_sessions": config.prerank_online_sessions,
        "epochs": config.prerank_epochs,
        "ranker": engine.ranking.ranker.name,
    }


def _concat(*tables: pa.Table) -> pa.Table:
    return pa.concat_tables([t.select(tables[0].schema.names) for t in tables])


def _offline(
    engine: Engine,
    models: dict[str, LightPreranker],
    requests: pd.DataFrame,
    config: StagesConfig,
) -> dict[str, _Measured]:
    """Each system's top 10, consistency and costs on the test requests."""
    rank = engine.stage("rank")
    assert rank is not None
    keep = config.prerank_keep
    stages: dict[str, PrerankStage] = {NO_PRERANK: PrerankStage(keep)}
    for name, model in models.items():
        stages[name] = PrerankStage(keep, model, engine.products)
    out = {name: _Measured() for name in [*stages, FULL_RANK]}
    for rid, query, domain, user in zip(
        requests["request_id"], requests["query"], requests["domain"], requests["user_id"],
        strict=True,
    ):  # fmt: skip
        params = SearchParams(query[: engine.settings.search.max_query_chars], domain, user)
        base = engine.prepare(params, "prerank")
        full = copy.deepcopy(base)
        full.window = len(full.candidates)
        started = time.perf_counter()
        rank.run(full)
        full_ms = 1000 * (time.perf_counter() - started)
        best = set(full.candidates.keys[:10])
        _record(out[FULL_RANK], rid, full, best, full.candidates.keys, 0.0, full_ms)
        for name, stage in stages.items():
            state = copy.deepcopy(base)
            started = time.perf_counter()
            stage.run(state)
            cost = 1000 * (time.perf_counter() - started)
            kept = state.candidates.keys[: state.window or 0]
            started = time.perf_counter()
            rank.run(state)
            _record(out[name], rid, state, best, kept, cost, 1000 * (time.perf_counter() - started))
    return out


def _record(
    into: _Measured,
    rid: str,
    state: SearchState,
    best: set[tuple[str, str]],
    kept: list[tuple[str, str]],
    cost_ms: float,
    rank_ms: float,
) -> None:
    into.run[rid] = state.candidates.keys[:10]
    into.consistency.append(len(best & set(kept)) / len(best) if best else 1.0)
    into.cost_ms.append(cost_ms)
    into.rank_ms.append(rank_ms)


@dataclass
class _Online:
    """Per system: clicks and purchases per 1,000 requests, CIs, paired difference."""

    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    ci: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    diff: dict[str, dict[str, object]] = field(default_factory=dict)


def _online(
    config: StagesConfig,
    ws: Workspace,
    settings: Settings,
    models: dict[str, LightPreranker],
    say: Say,
    report: Report,
) -> _Online:
    """Replays of the same sessions against the engine with each system's pre-ranking."""
    world = load_world(ws.dir("ground_truth"))
    fx = {s.domain_id: float(s.fx) for s in world.markets.specs}
    base = Engine.load(ws, settings)
    totals: dict[str, pd.DataFrame] = {}
    systems = [FULL_RANK, NO_PRERANK, *models]
    for name in systems:
        if name == FULL_RANK:
            full = settings.model_copy(deep=True)
            full.pipeline.prerank_keep = config.prerank_pool
            engine = Engine.load(ws, full)
        elif name == NO_PRERANK:
            engine = base
        else:
            stage = PrerankStage(config.prerank_keep, models[name], base.products)
            engine = Engine(
                base.retrieval, base.products, settings, base.bundle, ws, {"prerank": stage}
            )
        say(f"prerank: online replay of {config.prerank_online_sessions} sessions, {name}")
        with report.timer(f"prerank/online/{name}"):
            result = replay(
                world, EnginePolicy(engine), config.prerank_online_sessions,
                config.seed + 3000, keep_logs=True,
            )  # fmt: skip
        totals[name] = session_totals(result, fx)
    out = _Online()
    keys = {"clicks": "clicks_per_1k", "purchases": "purchases_per_1k"}
    for name in systems:
        pair, ci = compare(totals[FULL_RANK], totals[name], config.n_resamples, config.seed)
        out.metrics[name] = {keys[m]: pair["b"][m] for m in keys}
        out.ci[name] = {keys[m]: ci["b"][m] for m in keys}
        if name != FULL_RANK:
            out.diff[name] = {
                keys[m]: {"diff": pair["diff"][m], "ci95": list(ci["diff"][m])} for m in keys
            }
    return out


__all__ = ["FULL_RANK", "NO_PRERANK", "TRAINED", "measure"]
