"""``simulate()``: generate a world, log sessions under the default policy, keep the truth apart."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from shopsearch.errors import WorkspaceError
from shopsearch.simulate.common import SESSIONS
from shopsearch.simulate.config import SimulationConfig
from shopsearch.simulate.lexical import LexicalNoisePolicy
from shopsearch.simulate.persist import load_world, save_world
from shopsearch.simulate.run import ChunkLogs, run_sessions
from shopsearch.simulate.sessions import SessionPlanner
from shopsearch.simulate.summary import SimulationSummary
from shopsearch.simulate.truth import REQUESTS_DIR
from shopsearch.simulate.world import World
from shopsearch.simulate.worldgen import generate_world
from shopsearch.store.atomic import write_json, write_parquet
from shopsearch.store.workspace import Workspace

#: Session id prefix of :func:`simulate` (replays use ``r<seed>-``).
SESSION_PREFIX = "s"


def simulate(
    workspace: Workspace,
    config: SimulationConfig,
    progress: Callable[[int, int], None] | None = None,
) -> SimulationSummary:
    """Simulate a multi-market shop into an empty ``workspace``.

    Writes the ``domains`` and ``products`` tables, then per chunk of sessions the ``requests``,
    ``impressions`` and ``interactions`` logged under the default
    :class:`~shopsearch.simulate.lexical.LexicalNoisePolicy`; the world and the need behind every
    request go to ``W/ground_truth/`` (see :mod:`shopsearch.simulate.truth`).

    Args:
        workspace: a workspace without products, logs or ground truth.
        config: every parameter and the seed.
        progress: called as ``progress(sessions_done, sessions_total)`` after each chunk.

    Returns:
        Per-domain counts and realised rates (also saved as ``ground_truth/summary.json``).

    Raises:
        WorkspaceError: if the workspace already holds products, logs or ground truth.
    """
    started = time.perf_counter()
    _check_empty(workspace)
    world = generate_world(config)
    folder = workspace.dir("ground_truth")
    save_world(world, folder)
    workspace.append("domains", domains_table(world))
    workspace.append("products", world.catalog.table)
    policy = LexicalNoisePolicy(world.catalog.table, config.policy, seed=config.seed)
    policy.stream_sample = config.policy.stream_sample
    planner = SessionPlanner(world, config.sessions, config.seed, (SESSIONS,), SESSION_PREFIX)

    def sink(chunk: int, logs: ChunkLogs) -> None:
        write_logs(workspace, logs, f"part-{chunk:05d}")

    counters = run_sessions(world, planner, policy, sink, progress)
    summary = counters.summary(policy.name, config.seed, time.perf_counter() - started)
    write_json(folder / "summary.json", summary.to_dict())
    return summary


def write_logs(workspace: Workspace, logs: ChunkLogs, truth_name: str) -> None:
    """Append a chunk's logs to the workspace and its truth to ``ground_truth/requests/``."""
    workspace.append("requests", logs.requests)
    workspace.append("impressions", logs.impressions)
    workspace.append("interactions", logs.interactions)
    workspace.append("stream", logs.stream)
    folder: Path = workspace.dir("ground_truth") / REQUESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    write_parquet(folder / f"{truth_name}.parquet", logs.truth)


def domains_table(world: World) -> pa.Table:
    """The ``domains`` table of the world's markets."""
    specs = world.markets.specs
    return pa.table(
        {
            "domain_id": [s.domain_id for s in specs],
            "name": [s.name for s in specs],
            "language": [s.language for s in specs],
            "currency": [s.currency for s in specs],
        }
    )


def prepare_output(workspace: Workspace, world: World) -> None:
    """Make ``workspace`` hold ``world`` (written if empty, else it must be the same world)."""
    folder = workspace.dir("ground_truth")
    if (folder / "world.json").exists():
        if load_world(folder).config != world.config:
            raise WorkspaceError(
                f"workspace {workspace.root} holds another simulated world (other config); "
                "replay into that world's workspace or into a new directory"
            )
        return
    _check_empty(workspace)
    save_world(world, folder)
    workspace.append("domains", domains_table(world))
    workspace.append("products", world.catalog.table)


def _check_empty(workspace: Workspace) -> None:
    for table in ("products", "requests"):
        if workspace.count(table):
            raise WorkspaceError(
                f"workspace {workspace.root} already holds {workspace.count(table)} {table} "
                "rows; simulate into a new directory so nothing stored is mixed with "
                "simulated data"
            )
    if (workspace.root / "ground_truth" / "config.json").exists():
        raise WorkspaceError(
            f"workspace {workspace.root} already holds a simulation's ground truth; "
            "simulate into a new directory"
        )
