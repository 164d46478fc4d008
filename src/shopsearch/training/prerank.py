"""Train the pre-ranking model from the logged stream and publish a bundle that serves it
(``shopsearch train --stage prerank``).

The event log is compacted first, so served searches whose stream was recorded count. The
graded lists (:func:`~shopsearch.prerank.samples.stream_lists`) of every request with a logged
stream, the products' logged statistics and the catalog train the light model with the
``[prerank] objective``; the new bundle is the current one plus ``prerank/`` (the model, its
precomputed product rows and ``report.json``) and is published only if it loads and searches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError
from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.stages.prerank import PRERANK_DIR
from shopsearch.prerank.base import PrerankConfig
from shopsearch.prerank.hccp import LightPreranker
from shopsearch.prerank.samples import (
    catalog_frame,
    level_counts,
    product_stats,
    stream_lists,
)
from shopsearch.progress import Say
from shopsearch.store.atomic import write_json
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.training.publish import publish_stage


def prerank_config(settings: Settings, seed: int = 0) -> PrerankConfig:
    """The model's settings from ``[prerank]``."""
    own = settings.prerank
    return PrerankConfig(
        objective=own.objective, epochs=own.epochs, budget_s=own.budget_s, seed=seed
    )


def train_prerank_bundle(
    workspace: Workspace,
    settings: Settings,
    say: Say | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Train the pre-ranker on the logged stream and publish a bundle with it.

    Raises:
        InvalidInputError: no products, or no logged stream to learn from.
        WorkspaceError: no current bundle, or a new bundle that does not load.
    """
    tell = say or (lambda _message: None)
    old = current_bundle(workspace)
    compact_event_log(workspace)
    products = catalog_frame(workspace)
    if products.empty:
        raise InvalidInputError(f"workspace {workspace.root} has no products; ingest some first")
    impressions, interactions = workspace.table("impressions"), workspace.table("interactions")
    lists = stream_lists(
        workspace.table("stream"), workspace.table("requests"), impressions, interactions
    )
    counts = level_counts(lists)
    tell(f"{len(lists)} requests with a logged stream; candidates by level: {counts}")
    config = prerank_config(settings)
    model = LightPreranker(config).fit(
        lists, products, product_stats(impressions, interactions), progress
    )
    report = {
        "config": asdict(config),
        "requests": model.requests_,
        "levels": counts,
        "steps": model.steps_,
        "planned_steps": model.planned_steps_,
    }

    def save(folder: Path) -> None:
        model.save(folder)
        write_json(folder / "report.json", report)

    meta = {"prerank": {"objective": config.objective, "requests": model.requests_}}
    return publish_stage(workspace, settings, old, PRERANK_DIR, save, meta, lists[0].query)


__all__ = ["prerank_config", "train_prerank_bundle"]
