"""``shopsearch eval stages --dataset sim``: pre-ranking, re-ranking and traffic allocation on
the simulator, each beside its baselines, in one report.

The suite is made of **parts**, one module per stage family (:data:`PARTS`); ``--parts`` picks
which run (default: all). Each part trains its models from the workspace's logs (pre-ranking
from a logged stream), evaluates them against the simulator's ground truth and adds its systems
to the one report, every system with ``ndcg@10`` (the report's primary metric) and an
``extra`` object ``{"part": {"name": ..., ...}}`` (which part, and its settings):

* ``prerank`` (:mod:`.stages_prerank`): ``consistency``, ``ndcg@10``, ``cost_ms``;
* ``rerank`` (:mod:`.stages_rerank`): ``ndcg@10``, ``alpha_ndcg@10``, ``ild``, ``coverage``;
* ``allocation`` (:mod:`.stages_allocation`): ``clicks_per_1k``, ``purchases_per_1k``,
  ``new_item_exposure_per_1k`` over a multi-day replay, and the Pareto front of the
  fixed-weight blends drawn in a PNG next to the report.

A part is a module with ``measure(config, report, say)``; adding one is a module plus its name
in :data:`PARTS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

import orjson

from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.options import option
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suite import SUITES, Suite
from shopsearch.progress import Say
from shopsearch.store.workspace import Workspace

#: Part name → module (under ``shopsearch.evaluate.suites``) with ``measure``.
PARTS: dict[str, str] = {
    "prerank": "stages_prerank",
    "rerank": "stages_rerank",
    "allocation": "stages_allocation",
}


@dataclass(frozen=True)
class StagesConfig:
    """Inputs of the stages suite.

    Attributes:
        workspace: a simulated workspace with an index (``shopsearch simulate``, ``index``).
        report_path: where the report goes (``shopsearch eval`` sets it; parts write their
            plots next to it; ``None``: no plots).
        parts: which parts run (see :data:`PARTS`); empty: all.
        seed: seed of training, replays and bootstraps.
        n_resamples: bootstrap resamples of every interval.
        prerank_pool, prerank_keep, prerank_sessions, prerank_test_sessions,
            prerank_online_sessions, prerank_epochs: the ``prerank`` part
            (:mod:`.stages_prerank`).
        rerank_sessions: replay sessions whose requests the ``rerank`` part re-ranks.
        allocation_days: days of the allocation part's multi-day replay.
        allocation_sessions: sessions per day of that replay.
        allocation_blends: weights of the fixed-weight blends (baselines) of that part.
    """

    workspace: Annotated[
        Path, option("Simulated workspace", flags=("--workspace", "-w"), metavar="W")
    ]
    report_path: Path | None = None
    parts: Annotated[tuple[str, ...], option("Parts to run (default: all)")] = ()
    seed: Annotated[int, option("Seed of training, replays and bootstraps")] = 0
    n_resamples: int = 1000
    prerank_pool: Annotated[int, option("Candidates retrieval passes to pre-ranking")] = 2000
    prerank_keep: Annotated[int, option("Candidates pre-ranking keeps for ranking")] = 200
    prerank_sessions: Annotated[
        int, option("Sessions whose stream is logged to train the pre-rankers")
    ] = 3000
    prerank_test_sessions: Annotated[
        int, option("Sessions whose requests the pre-rankers are measured on")
    ] = 600
    prerank_online_sessions: Annotated[
        int, option("Sessions replayed against each pre-ranking configuration")
    ] = 2000
    prerank_epochs: Annotated[int, option("Passes of each pre-ranker over the stream")] = 4
    rerank_sessions: Annotated[
        int, option("Replay sessions whose requests the rerank part re-ranks")
    ] = 1000
    allocation_days: Annotated[int, option("Days of the allocation replay", low=1)] = 7
    allocation_sessions: Annotated[
        int, option("Sessions per day of the allocation replay", low=2)
    ] = 1000
    allocation_blends: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


class Part(Protocol):
    """What a part module provides."""

    def __call__(self, config: StagesConfig, report: Report, say: Say) -> None:
        """Train, evaluate and add the part's systems to ``report``."""


def _part(name: str) -> Part:
    module = importlib.import_module(f"shopsearch.evaluate.suites.{PARTS[name]}")
    measure: Part = module.measure
    return measure


def run_stages_suite(config: StagesConfig, say: Say) -> Report:
    """Run the chosen parts (see the module docstring).

    Raises:
        InvalidInputError: for an unknown part or a workspace that is not simulated.
    """
    chosen = config.parts or tuple(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        raise InvalidInputError(
            f"unknown part(s) {', '.join(unknown)}; use some of {', '.join(PARTS)}"
        )
    ws = Workspace.open(config.workspace)
    sim_config = ws.dir("ground_truth") / "config.json"
    if not sim_config.exists():
        raise InvalidInputError(
            f"{config.workspace} is not a simulated workspace; build one with "
            f"'shopsearch simulate -w {config.workspace}'"
        )
    report = Report(
        suite="stages/sim",
        primary_metric=StagesSuite.primary_metric,
        config={
            "workspace": config.workspace,
            "parts": list(chosen),
            "seed": config.seed,
            "simulator": orjson.loads(sim_config.read_bytes()).get("config", {}),
        },
    )
    for name in chosen:
        say(f"stages: {name}")
        with report.timer(name):
            _part(name)(config, report, say)
    return report


@SUITES.register()
class StagesSuite(Suite[StagesConfig]):
    """Pre-ranking, re-ranking and traffic allocation on the simulator, beside their baselines:
    consistency and cost, diversity, and clicks / purchases / new-item exposure per 1,000
    requests.

    Example: shopsearch eval stages -w W --parts prerank,rerank --report stages.json
    """

    name = "stages/sim"
    config_type = StagesConfig
    primary_metric = "ndcg@10"

    def run(self, config: StagesConfig, say: Say) -> Report:
        """:func:`run_stages_suite`."""
        return run_stages_suite(config, say)


__all__ = ["PARTS", "StagesConfig", "StagesSuite", "run_stages_suite"]
