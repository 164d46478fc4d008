"""How many candidates the ranking model should re-score: quality and CPU per count (issue 20).

On a simulated workspace with a ranking model, the engine is loaded once per ranked count
(``[pipeline] prerank_keep``; retrieval still passes ``[retrieval] candidates`` on) and once
without the ranking stage, each with the query, result and response caches off and one
compute thread, and measured two ways:

- **offline**: the requests of a replay of ``--test-sessions`` sessions (seed ``seed + 2000``,
  served by the first count) are searched by every engine, after a warm-up of ``WARMUP`` of
  them; the engines' order rotates from request to request, so each is first as often. The
  top 10 is scored against the simulator's true grades (NDCG@10, paired against the first
  count), and each search's CPU is read on the calling thread's clock (with one compute
  thread, tantivy, faiss and ONNX Runtime all run on it; ``bench stages`` reads the process's
  clock). Where each count's top 10 came from: how many of its products are beyond
  retrieval's first 100 (the candidates' order before pre-ranking), and their mean true
  grade against that of the rest;
- **online**: ``--online-sessions`` other sessions (seed ``seed + 3000``, the same for every
  engine) are replayed against each engine: clicks, carts, purchases and GMV per 1,000
  requests, paired against the first count (95% bootstrap intervals over sessions).

``--int8`` adds an engine that ranks the first count with the ranking graphs quantised by ONNX
Runtime's dynamic quantisation (weights stored as int8, activations quantised at each call;
written to a temporary folder): what a smaller model call saves, and what its rounding costs
in ranking quality. It needs a ranking model scored with ONNX Runtime from its saved graph.

CPU is compared per request too: the mean difference from the first count with its 95%
paired bootstrap interval over requests, so that the machine's drift during a run (which
every engine sees, as they alternate) cancels.

    python benchmarks/ranked_candidates.py -w W --keep 200,150,100,50 --report ranked.json
    python benchmarks/ranked_candidates.py -w W --keep 200 --int8 --report int8.json
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shopsearch.bench.stages import WARMUP, _settings_env
from shopsearch.config import load_settings
from shopsearch.evaluate.metrics import paired_bootstrap_diff
from shopsearch.evaluate.report import evaluate_run
from shopsearch.evaluate.sim_truth import truth_qrels
from shopsearch.evaluate.suites.online import EnginePolicy, compare, session_totals
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.ranking.onnx_scorer import OnnxScorer, shared_graph_path
from shopsearch.serve.threads import compute_threads_limited
from shopsearch.simulate.persist import load_world
from shopsearch.simulate.replay import replay
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace

NO_RANKING = "no ranking"
INT8 = "int8"


def _engine(workspace: Workspace, keep: int | None) -> Engine:
    """The workspace's engine, caches off, ranking the first ``keep`` (``None``: no ranking)."""
    settings, _ = _settings_env(
        load_settings(workspace.root), caches=False, ranking=keep is not None
    )
    settings.pipeline.stream_sample = 0.0
    if keep is not None:
        settings.pipeline.prerank_keep = keep
    engine = Engine.load(workspace, settings)
    if keep is not None and engine.ranking is None:
        raise SystemExit(f"the current bundle of {workspace.root} has no ranking model")
    return engine


def _quantise(engine: Engine, folder: Path) -> None:
    """Score ``engine``'s ranking with its graphs quantised to int8 (written into ``folder``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ranking = engine.ranking
    assert ranking is not None
    scorer = ranking.ranker.onnx
    if scorer is None or not scorer.path.is_file():
        raise SystemExit(
            "--int8: the ranking model is not scored with ONNX Runtime from a saved graph "
            "(retrain the ranking stage to save one)"
        )
    quantised = folder / scorer.path.name
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its advice to pre-process the graph, once per graph
    try:
        quantize_dynamic(scorer.path, quantised, weight_type=QuantType.QInt8)
        if scorer.shared_session is not None:
            shared = shared_graph_path(scorer.path)
            quantize_dynamic(shared, shared_graph_path(quantised), weight_type=QuantType.QInt8)
    finally:
        logging.disable(previous)
    int8 = OnnxScorer(quantised, scorer.threads)
    assert (int8.shared_session is None) == (scorer.shared_session is None)
    ranking.ranker.onnx = int8


def _offline(
    workspace: Workspace, engines: dict[str, Engine], sessions: int, seed: int
) -> dict[str, Any]:
    world = load_world(workspace.dir("ground_truth"))
    first = next(iter(engines.values()))
    test = replay(world, EnginePolicy(first), sessions, seed + 2000, keep_logs=True)
    assert test.logs is not None
    requests = test.logs.requests.to_pandas()
    names = list(engines)
    runs: dict[str, dict[str, list[tuple[str, str]]]] = {name: {} for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    retrieval_order: dict[str, dict[tuple[str, str], int]] = {}
    rows = list(
        zip(
            requests["request_id"], requests["query"], requests["domain"], requests["user_id"],
            strict=True,
        )
    )  # fmt: skip
    for _, query, domain, user in rows[:WARMUP]:  # loads lazily built tables before timing
        for engine in engines.values():
            engine.search(_params(engine, query, domain, user, 10))
    for number, (rid, query, domain, user) in enumerate(rows):
        turn = number % len(names)
        for name in names[turn:] + names[:turn]:
            engine = engines[name]
            start = time.thread_time()
            response = engine.search(_params(engine, query, domain, user, 10))
            cpu[name].append(1000 * (time.thread_time() - start))
            runs[name][rid] = [
                (i.domain, i.product_id) for i in response.items if i.domain == domain
            ]
        # retrieval's order: the candidates before pre-ranking
        retrieved = first.prepare(_params(first, query, domain, user, 10), "prerank")
        retrieval_order[rid] = {
            key: place for place, key in enumerate(retrieved.candidates.keys, 1)
        }
    ids = requests["request_id"].tolist()
    qrels = truth_qrels(test.truth, workspace.table("products"), ids)
    scored = {
        name: evaluate_run(runs[name], qrels, metrics=("ndcg@10",), query_ids=ids) for name in names
    }
    reference = scored[names[0]].per_query["ndcg@10"]
    out: dict[str, Any] = {"requests": len(ids)}
    for name in names:
        ndcg = scored[name].per_query["ndcg@10"]
        spent = np.asarray(cpu[name])
        half = len(spent) // 2
        out[name] = {
            "ndcg@10": scored[name].metrics["ndcg@10"],
            "ndcg@10_ci": scored[name].ci["ndcg@10"],
            "ndcg@10_minus_first": paired_bootstrap_diff(ndcg, reference)._asdict(),
            "cpu_ms_mean": float(spent.mean()),
            "cpu_ms_p50": float(np.median(spent)),
            "cpu_ms_mean_halves": [float(spent[:half].mean()), float(spent[half:].mean())],
            "cpu_ms_minus_first": paired_bootstrap_diff(spent, cpu[names[0]])._asdict(),
            **_sources(runs[name], retrieval_order, qrels),
        }
    return out


def _params(engine: Engine, query: str, domain: str, user: str, size: int) -> SearchParams:
    return SearchParams(query[: engine.settings.search.max_query_chars], domain, user, size=size)


def _sources(
    run: dict[str, list[tuple[str, str]]],
    retrieval_order: dict[str, dict[tuple[str, str], int]],
    qrels: Mapping[str, Mapping[tuple[str, str], float]],
) -> dict[str, float]:
    """Per request, how many of the top 10 lie beyond retrieval's first 100, and the mean true
    grade of those products and of the others."""
    deep, grades_deep, grades_rest = [], [], []
    for rid, keys in run.items():
        order, grades = retrieval_order[rid], qrels.get(rid, {})
        beyond = [key for key in keys if order.get(key, 101) > 100]
        deep.append(len(beyond))
        grades_deep += [grades.get(key, 0.0) for key in beyond]
        grades_rest += [grades.get(key, 0.0) for key in keys if key not in beyond]
    return {
        "top10_beyond_retrieval_100": float(np.mean(deep)),
        "grade_beyond_retrieval_100": float(np.mean(grades_deep)) if grades_deep else float("nan"),
        "grade_within_retrieval_100": float(np.mean(grades_rest)) if grades_rest else float("nan"),
    }


def _online(
    workspace: Workspace, engines: dict[str, Engine], sessions: int, seed: int
) -> dict[str, Any]:
    world = load_world(workspace.dir("ground_truth"))
    fx = {spec.domain_id: float(spec.fx) for spec in world.markets.specs}
    totals = {}
    for name, engine in engines.items():
        started = time.perf_counter()
        result = replay(world, EnginePolicy(engine), sessions, seed + 3000, keep_logs=True)
        totals[name] = session_totals(result, fx)
        print(f"online: {name} replayed in {time.perf_counter() - started:.0f} s", flush=True)
    first = next(iter(totals))
    out: dict[str, Any] = {"sessions": sessions}
    for name in list(totals)[1:]:
        metrics, ci = compare(totals[first], totals[name], 1000, seed)
        out[name] = {"first": metrics["a"], "this": metrics["b"], "minus_first": metrics["diff"]}
        out[name]["minus_first_ci"] = ci["diff"]
    return out


def _label(name: str) -> str:
    return name if name == NO_RANKING else f"ranking {name:>4}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--keep", default="200,150,100,50", help="ranked counts, first = reference")
    parser.add_argument("--test-sessions", type=int, default=1500, help="offline replay")
    parser.add_argument("--online-sessions", type=int, default=8000, help="online replays")
    parser.add_argument(
        "--int8", action="store_true", help="also rank the first count with int8 ranking graphs"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    workspace = Workspace.open(args.workspace)
    keeps = [int(k) for k in args.keep.split(",")]
    if len(set(keeps)) != len(keeps) or min(keeps) < 1:
        raise SystemExit(f"--keep {args.keep}: give distinct counts of at least 1")
    report: dict[str, Any] = {"suite": "benchmarks/ranked_candidates", "keep": keeps}
    with compute_threads_limited(1), tempfile.TemporaryDirectory() as tmp:
        engines = {str(keep): _engine(workspace, keep) for keep in keeps}
        if args.int8:
            int8 = engines[f"{keeps[0]} {INT8}"] = _engine(workspace, keeps[0])
            _quantise(int8, Path(tmp))
        engines[NO_RANKING] = _engine(workspace, None)
        offline = _offline(workspace, engines, args.test_sessions, args.seed)
        report["offline"] = offline
        print(f"offline, {offline['requests']} requests:")
        for name in engines:
            got = offline[name]
            diff, cpu = got["ndcg@10_minus_first"], got["cpu_ms_minus_first"]
            print(
                f"  {_label(name)}: NDCG@10 {got['ndcg@10']:.4f} ({diff['mean_diff']:+.4f} "
                f"[{diff['low']:+.4f}, {diff['high']:+.4f}]), CPU per search "
                f"{got['cpu_ms_mean']:.2f} ms (halves {got['cpu_ms_mean_halves'][0]:.2f}, "
                f"{got['cpu_ms_mean_halves'][1]:.2f}; {cpu['mean_diff']:+.3f} "
                f"[{cpu['low']:+.3f}, {cpu['high']:+.3f}] per request); of the top 10, "
                f"{got['top10_beyond_retrieval_100']:.2f} beyond retrieval's 100 (mean grade "
                f"{got['grade_beyond_retrieval_100']:.2f} against "
                f"{got['grade_within_retrieval_100']:.2f})",
                flush=True,
            )
        online = _online(workspace, engines, args.online_sessions, args.seed)
    report["online"] = online
    print(f"online, {args.online_sessions} sessions, against ranking {keeps[0]}:")
    for name in list(engines)[1:]:
        got = online[name]
        print(f"  {_label(name)}:")
        for metric, value in got["minus_first"].items():
            low, high = got["minus_first_ci"][metric]
            print(
                f"    {metric:9s} {got['first'][metric]:8.1f} -> {got['this'][metric]:8.1f} "
                f"({value:+.1f} [{low:+.1f}, {high:+.1f}])"
            )
    write_json(args.report, report)
    print(f"report written to {args.report}")


if __name__ == "__main__":
    main()
