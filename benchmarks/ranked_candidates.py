"""How many candidates the ranking model should re-score: quality and CPU per count (issue 20).

On a simulated workspace with a ranking model, the engine is loaded once per ranked count
(``[pipeline] prerank_keep``; retrieval still passes ``[retrieval] candidates`` on) with the
query, result and response caches off and one compute thread, and measured three ways:

- **offline**: the requests of a replay of ``--test-sessions`` sessions (seed ``seed + 2000``,
  served by the first count) are searched by every engine (after a warm-up of ``WARMUP``
  of them), in an order that alternates from
  request to request; the top 10 are scored against the simulator's true grades (NDCG@10, with
  the paired difference against the first count), and each search's CPU is read on the
  thread's clock;
- **online**: ``--online-sessions`` sessions (seed ``seed + 3000``) are replayed against each
  engine; clicks, carts, purchases and GMV per 1,000 requests, with the paired difference
  against the first count (bootstrap over sessions);
- **without ranking**, online too, for scale: what the ranking model adds at all.

    python benchmarks/ranked_candidates.py -w W --keep 200,150,100,50 --report ranked.json
"""

from __future__ import annotations

import argparse
import time
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
from shopsearch.serve.threads import compute_threads_limited
from shopsearch.simulate.persist import load_world
from shopsearch.simulate.replay import replay
from shopsearch.store.atomic import write_json
from shopsearch.store.workspace import Workspace

NO_RANKING = "no ranking"


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
    rows = zip(
        requests["request_id"], requests["query"], requests["domain"], requests["user_id"],
        strict=True,
    )  # fmt: skip
    warm = requests.head(WARMUP)
    for engine in engines.values():  # loads lazily built tables before any timing
        for query, domain in zip(warm["query"], warm["domain"], strict=True):
            engine.search(SearchParams(query[: engine.settings.search.max_query_chars], domain))
    for number, (rid, query, domain, user) in enumerate(rows):
        for name in names if number % 2 == 0 else names[::-1]:
            engine = engines[name]
            params = SearchParams(
                query[: engine.settings.search.max_query_chars], domain, user, size=10
            )
            start = time.thread_time()
            response = engine.search(params)
            cpu[name].append(1000 * (time.thread_time() - start))
            runs[name][rid] = [
                (i.domain, i.product_id) for i in response.items if i.domain == domain
            ]
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
        }
    return out


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-w", "--workspace", type=Path, required=True)
    parser.add_argument("--keep", default="200,150,100,50", help="ranked counts, first = reference")
    parser.add_argument("--test-sessions", type=int, default=1500)
    parser.add_argument("--online-sessions", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args()
    workspace = Workspace.open(args.workspace)
    keeps = [int(k) for k in args.keep.split(",")]
    report: dict[str, Any] = {"suite": "benchmarks/ranked_candidates", "keep": keeps}
    with compute_threads_limited(1):
        engines = {str(keep): _engine(workspace, keep) for keep in keeps}
        offline = _offline(workspace, engines, args.test_sessions, args.seed)
        report["offline"] = offline
        print(f"offline, {offline['requests']} requests:")
        for name in engines:
            got = offline[name]
            diff = got["ndcg@10_minus_first"]
            print(
                f"  ranking {name:>4}: NDCG@10 {got['ndcg@10']:.4f} ({diff['mean_diff']:+.4f} "
                f"[{diff['low']:+.4f}, {diff['high']:+.4f}]), CPU per search "
                f"{got['cpu_ms_mean']:.2f} ms (halves {got['cpu_ms_mean_halves'][0]:.2f}, "
                f"{got['cpu_ms_mean_halves'][1]:.2f})",
                flush=True,
            )
        engines[NO_RANKING] = _engine(workspace, None)
        online = _online(workspace, engines, args.online_sessions, args.seed)
    report["online"] = online
    print(f"online, {args.online_sessions} sessions, against ranking {keeps[0]}:")
    for name in list(engines)[1:]:
        got = online[name]
        print(f"  {name if name == NO_RANKING else 'ranking ' + name}:")
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
