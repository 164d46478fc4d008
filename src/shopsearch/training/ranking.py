"""Train the ranking stage on a workspace's logs and publish it in a new bundle.

The new bundle copies the current bundle's other stages (retrieval indexes) and adds
``ranking/`` (see :class:`~shopsearch.ranking.ranker.Ranker`); publishing makes it current, so a
running ``shopsearch serve`` hot-reloads it. When the current bundle has a dense retriever, the
samples get the ``dense_sim`` feature from it (:mod:`shopsearch.ranking.dense_feature`), and the
engine serving the new bundle computes it with the same retriever.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson

from shopsearch.config import RankingSettings
from shopsearch.events.compaction import compact_event_log
from shopsearch.ranking.dense_feature import DenseSimilarity
from shopsearch.ranking.ranker import train_ranker
from shopsearch.ranking.registry import check_model_name
from shopsearch.ranking.samples import build_samples
from shopsearch.ranking.train import Progress, TrainConfig
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.store.bundles import bundle_meta, current_bundle, new_bundle_dir, publish_bundle
from shopsearch.store.workspace import Workspace

RANKING_DIR = "ranking"


def bundle_similarity(bundle: Path) -> DenseSimilarity | None:
    """The dense similarity of a bundle's dense retriever (``None`` when it has none)."""
    config = bundle / "retrieval" / "config.json"
    if not config.exists():
        return None
    sources = orjson.loads(config.read_bytes()).get("sources", {})
    for name, kind in sources.items():
        if kind == "dense":
            return DenseSimilarity(DenseRetriever.load(bundle / "retrieval" / name))
    return None


def train_ranking_bundle(
    workspace: Workspace, settings: RankingSettings, progress: Progress | None = None
) -> Path:
    """Fit ``settings.model`` on every logged impression; returns the published bundle.

    Served traffic still in the event log is compacted into the tables first, so what the
    engine served and logged is trained on (the loop closes).
    """
    check_model_name(settings.model)
    old = current_bundle(workspace)
    meta = bundle_meta(old)
    compact_event_log(workspace)
    samples = build_samples(workspace.connect(), similarity=bundle_similarity(old))
    config = TrainConfig(epochs=settings.epochs)
    ranker = train_ranker(
        samples, settings.model, settings.position_bias, config, progress=progress
    )
    bundle = new_bundle_dir(workspace)
    for child in old.iterdir():
        if child.is_dir() and child.name != RANKING_DIR:
            shutil.copytree(child, bundle / child.name)
    ranker.save(bundle / RANKING_DIR)
    stages = dict(meta.get("stages", {}) or {})  # type: ignore[call-overload]
    stages[RANKING_DIR] = RANKING_DIR
    publish_bundle(
        workspace,
        bundle,
        {
            **{k: v for k, v in meta.items() if k not in ("created", "id")},
            "stages": stages,
            "ranking": {
                "model": settings.model,
                "position_bias": settings.position_bias,
                "impressions": len(samples),
            },
        },
    )
    return bundle


__all__ = ["RANKING_DIR", "bundle_similarity", "train_ranking_bundle"]
