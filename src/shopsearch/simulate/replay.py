"""Replay simulated users against any ranking policy (offline A/B tests).

``replay(source, policy, n_sessions, seed)`` plans ``n_sessions`` new sessions in the world of
``source`` from ``seed`` (who searches, when, for what, what they type, and every behavioural
random number; see :mod:`shopsearch.simulate.sessions`) and lets ``policy`` rank for them. Two
policies replayed with the same seed meet the same users with the same needs and the same random
numbers, so the difference of their aggregates is the effect of the ranking alone (up to the
refinements the rankings cause). Session ids are ``r<seed>-<number>``; request ids
``<session>-<n>``.

:func:`planned_truth` gives, before any policy runs, the ground truth of every request a replay
*could* issue, e.g. for an oracle policy or to score any engine's rankings offline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.simulate.api import prepare_output, write_logs
from shopsearch.simulate.common import REPLAY
from shopsearch.simulate.launch import count_sales, with_sales
from shopsearch.simulate.persist import load_world
from shopsearch.simulate.policy import RankingPolicy
from shopsearch.simulate.run import ChunkLogs, run_sessions
from shopsearch.simulate.sessions import SessionPlanner
from shopsearch.simulate.summary import SimulationSummary
from shopsearch.simulate.truth import REQUESTS_DIR, TRUTH_SCHEMA, GroundTruth, truth_table
from shopsearch.simulate.world import World
from shopsearch.store.schema import empty_table
from shopsearch.store.workspace import Workspace


@dataclass(frozen=True)
class SimulatedLogs:
    """Logs in the workspace schema."""

    requests: pa.Table
    impressions: pa.Table
    interactions: pa.Table
    stream: pa.Table


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of a replay.

    Attributes:
        summary: counts and rates per domain and overall; ``summary.total.per_1k_requests()``
            gives clicks, carts, purchases and GMV (USD) per 1,000 requests.
        truth: ground truth of the replay's requests.
        logs: the logs, if ``keep_logs`` was set.
    """

    summary: SimulationSummary
    truth: GroundTruth
    logs: SimulatedLogs | None


def _world(source: Workspace | World) -> World:
    return source if isinstance(source, World) else load_world(source.dir("ground_truth"))


def _planner(world: World, n_sessions: int, seed: int) -> SessionPlanner:
    if n_sessions < 1:
        raise InvalidInputError(f"n_sessions={n_sessions} is not allowed; use n_sessions >= 1")
    if seed < 0:
        raise InvalidInputError(f"seed={seed} is not allowed; use a seed >= 0")
    return SessionPlanner(world, n_sessions, world.config.seed, (REPLAY, seed), f"r{seed}-")


def replay(
    source: Workspace | World,
    policy: RankingPolicy,
    n_sessions: int,
    seed: int,
    *,
    output: Workspace | None = None,
    keep_logs: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Simulate ``n_sessions`` sessions of the world of ``source`` ranked by ``policy``.

    Args:
        source: a simulated workspace (its ground truth is read) or a :class:`World`.
        policy: ranks the products shown to the simulated users.
        n_sessions: sessions to simulate.
        seed: seed of the sessions; use the same seed for every policy of an A/B test.
        output: a workspace to append the logs to (and the ground truth of the requests); an
            empty workspace first receives the world's domains, products and ground truth.
        keep_logs: also return the logs as Arrow tables.
        progress: called as ``progress(sessions_done, n_sessions)`` after each chunk.

    Returns:
        Aggregates, the ground truth of the replayed requests, and optionally the logs.

    Raises:
        WorkspaceError: if ``output`` holds another world or this seed's replay already.
    """
    started = time.perf_counter()
    world = _world(source)
    planner = _planner(world, n_sessions, seed)
    if output is not None:
        prepare_output(output, world)
        if any((output.dir("ground_truth") / REQUESTS_DIR).glob(f"replay-{seed}-*.parquet")):
            raise WorkspaceError(
                f"workspace {output.root} already holds the replay of seed {seed}; use another "
                "seed or another output workspace"
            )
    truths: list[pa.Table] = [TRUTH_SCHEMA.empty_table()]
    kept: list[ChunkLogs] = []

    def sink(chunk: int, logs: ChunkLogs) -> None:
        if output is not None:
            write_logs(output, logs, f"replay-{seed}-{chunk:05d}")
        truths.append(logs.truth)
        if keep_logs:
            kept.append(logs)

    counters = run_sessions(world, planner, policy, sink, progress)
    summary = counters.summary(policy.name, seed, time.perf_counter() - started)
    truth = GroundTruth(world, pa.concat_tables(truths))
    logs = None
    if keep_logs:
        logs = SimulatedLogs(
            *(
                pa.concat_tables([empty_table(name)] + [getattr(chunk, name) for chunk in kept])
                for name in ("requests", "impressions", "interactions", "stream")
            )
        )
    return ReplayResult(summary, truth, logs)


#: Day ``d`` of :func:`replay_days` with seed ``s`` replays the sessions of seed
#: ``s * DAY_SEEDS + d``.
DAY_SEEDS = 1000


def replay_days(
    source: Workspace | World,
    policy: RankingPolicy,
    days: int,
    sessions_per_day: int,
    seed: int,
    *,
    after_day: Callable[[int, ReplayResult], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[ReplayResult]:
    """A multi-day replay: the products' sales carry over from day to day.

    Day ``d`` replays ``sessions_per_day`` sessions of seed ``seed * DAY_SEEDS + d`` (the same
    users, needs and random numbers for every policy) in the world as the earlier days left it:
    new products' sales so far change their attractiveness (:mod:`shopsearch.simulate.launch`),
    so what a policy exposes today changes what sells tomorrow. Every day's logs are kept.

    Args:
        source: a simulated workspace or a :class:`World` (its sales, if any, are the start).
        policy: ranks for the simulated users (it may learn between days, see ``after_day``).
        days: days replayed.
        sessions_per_day: sessions per day.
        seed: seed of the replay; use the same seed for every policy of an A/B test.
        after_day: called as ``after_day(day, result)`` after each day, before the next.
        progress: called as ``progress(days_done, days)`` after each day.

    Returns:
        One :class:`ReplayResult` per day, with its logs.
    """
    if days < 1 or seed < 0 or seed * DAY_SEEDS + days - 1 >= 2**63:
        raise InvalidInputError(
            f"days={days}, seed={seed} are not allowed; use days >= 1 and a small seed >= 0"
        )
    world = _world(source)
    world = with_sales(world, world.sales)
    results: list[ReplayResult] = []
    for day in range(days):
        result = replay(world, policy, sessions_per_day, seed * DAY_SEEDS + day, keep_logs=True)
        assert result.logs is not None  # kept above
        sold = count_sales(world, result.logs.interactions)
        assert world.sales is not None  # set by with_sales
        world = with_sales(world, world.sales + sold)
        results.append(result)
        if after_day is not None:
            after_day(day, result)
        if progress is not None:
            progress(day + 1, days)
    return results


def planned_truth(source: Workspace | World, n_sessions: int, seed: int) -> GroundTruth:
    """Ground truth of every request a replay with these arguments could issue.

    Covers all ``max_requests`` requests of every planned session, whether or not a policy's
    rankings lead the user to issue them. Use it to build oracle policies or to score rankings
    of replayed requests.
    """
    world = _world(source)
    planner = _planner(world, n_sessions, seed)
    tables = [TRUTH_SCHEMA.empty_table()]
    for c in range(planner.n_chunks):
        plan = planner.chunk(c)
        rows = np.arange(len(plan))
        for slot in range(world.config.behaviour.max_requests):
            ids = pa.array(plan.request_ids(slot, rows), pa.string())
            tables.append(truth_table(world, plan, rows, slot, ids))
    return GroundTruth(world, pa.concat_tables(tables))
