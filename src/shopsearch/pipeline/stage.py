"""The stage contract: one small protocol every pipeline stage implements, and its registry.

A stage is a class registered in :data:`STAGES` under its ``name``. The engine builds each
stage named in ``[pipeline] stages`` with :meth:`Stage.load` — which may answer :class:`Absent`
when the bundle has no model for it (the search then shows it as skipped) — and calls
:meth:`Stage.run` on every search, in order, with one :class:`~.state.SearchState`.

Adding a stage is one new module with a registered class, plus its name in ``[pipeline]
stages`` (CONTRIBUTING.md has a worked example).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import Settings
from shopsearch.pipeline.request import StageStatus
from shopsearch.pipeline.state import SearchState
from shopsearch.registry import Registry, subclass_of
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.store.workspace import Workspace


@dataclass(frozen=True)
class StageContext:
    """What a stage may build itself from.

    Attributes:
        settings: the configuration.
        retrieval: the bundle's candidate sources (every stage may read their vectors).
        products: the catalog (titles, brands, categories, prices, stock of every product).
        workspace: the workspace served (``None`` for an engine built in memory).
        bundle: the bundle directory (``None`` for an engine built in memory); a stage's model
            lives in a folder of it named after the stage's family (``ranking/`` ...).
    """

    settings: Settings
    retrieval: HybridRetriever
    products: ProductLookup
    workspace: Workspace | None = None
    bundle: Path | None = None


@dataclass(frozen=True)
class Absent:
    """What :meth:`Stage.load` answers when there is nothing to run (no model in the bundle,
    or switched off); ``reason`` says which, and how to get one."""

    reason: str


@dataclass(frozen=True)
class Outcome:
    """What one run of a stage did: its status and a sentence for ``--explain``."""

    status: StageStatus
    detail: str = ""


class Stage(ABC):
    """One step of the search pipeline."""

    #: The registry name, as ``[pipeline] stages`` lists it.
    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The stage for this bundle and settings, or :class:`Absent`."""

    @abstractmethod
    def run(self, state: SearchState) -> Outcome:
        """Advance one search: change ``state`` (candidates, query, columns) in place."""


#: Stage name → class.
STAGES: Registry[type[Stage]] = Registry(
    "stages",
    modules=(
        "shopsearch.pipeline.stages.query",
        "shopsearch.pipeline.stages.retrieve",
        "shopsearch.pipeline.stages.relevance",
        "shopsearch.pipeline.stages.prerank",
        "shopsearch.pipeline.stages.rank",
        "shopsearch.pipeline.stages.rerank",
        "shopsearch.pipeline.stages.allocate",
    ),
    check=subclass_of(Stage),
)

__all__ = ["STAGES", "Absent", "Outcome", "Stage", "StageContext"]
