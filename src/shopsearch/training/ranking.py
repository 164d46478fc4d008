"""Train the ranking stage on a workspace's logs and publish it in a new bundle.

The new bundle copies the current bundle's other stages (retrieval indexes) and adds
``ranking/`` (see :class:`~shopsearch.ranking.ranker.Ranker`); publishing makes it current, so a
running ``shopsearch serve`` hot-reloads it. When the current bundle has a source named
``dense`` (MiniLM, or the learned model that replaced it), the samples get the ``dense_sim``
feature from its vectors (:mod:`shopsearch.ranking.dense_feature`), the model records that
source's vector space, and the ``rank`` stage serving the new bundle computes the feature from
the source of the same space. When the current bundle has a relevance model (``relevance/``,
``train --stage relevance``), the samples get the ``relevance`` feature: the student's score of
each logged (query, product) pair, computed as the relevance stage computes it at serving (the
same product texts and vectors), and the new bundle's engine feeds the model the relevance
stage's scores.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson

from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import RankingSettings, Settings, load_settings
from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.engine import RETRIEVAL_DIR
from shopsearch.pipeline.stages.rank import RANKING_DIR
from shopsearch.pipeline.stages.relevance import RELEVANCE_DIR
from shopsearch.ranking.dense_feature import DenseSimilarity
from shopsearch.ranking.feature_names import RELEVANCE
from shopsearch.ranking.ranker import Backend, train_ranker
from shopsearch.ranking.registry import check_model_name
from shopsearch.ranking.samples import PairFeature, build_samples
from shopsearch.ranking.train import Progress, TrainConfig
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.bundles import bundle_meta, current_bundle, new_bundle_dir
from shopsearch.store.workspace import Workspace
from shopsearch.training.publish import publish_checked

#: The source whose vectors give ``dense_sim``: the one serving as the bundle's dense source.
DENSE_SOURCE = "dense"


def bundle_similarity(bundle: Path) -> DenseSimilarity | None:
    """The dense similarity of a bundle's ``dense`` source (``None`` when it has none)."""
    config = bundle / RETRIEVAL_DIR / "config.json"
    if not config.exists():
        return None
    kind = orjson.loads(config.read_bytes()).get("sources", {}).get(DENSE_SOURCE)
    if kind is None:
        return None
    source = RETRIEVERS.get(kind).load(bundle / RETRIEVAL_DIR / DENSE_SOURCE)
    if "vectors" not in source.capabilities:
        return None
    return DenseSimilarity(source)  # type: ignore[arg-type]  # has vectors: a VectorSource


def bundle_relevance(bundle: Path, workspace: Workspace) -> PairFeature | None:
    """The relevance student's score of (query, product) pairs of a bundle with a relevance
    model, over ``workspace``'s products (``None`` when the bundle has none)."""
    folder = bundle / RELEVANCE_DIR
    if not folder.is_dir():
        return None
    from shopsearch.relevance.serving import ProductScorer, RelevanceModel, row_text

    model = RelevanceModel.load(folder)
    products = ProductLookup(workspace.table("products"))
    scorer = ProductScorer(model.student, ((k, row_text(r)) for k, r in products.items()))

    def score(
        queries: npt.NDArray[np.object_],
        domains: npt.NDArray[np.object_],
        product_ids: npt.NDArray[np.object_],
    ) -> npt.NDArray[np.float64]:
        keys = [(str(d), str(p)) for d, p in zip(domains, product_ids, strict=True)]
        texts = [row_text(row) for row in products.many(keys)]
        scores = scorer.score_pairs([str(q) for q in queries], keys, texts)
        return scores.astype(np.float64)

    return score


def train_ranking_bundle(
    workspace: Workspace,
    ranking: RankingSettings,
    progress: Progress | None = None,
    settings: Settings | None = None,
    backend: Backend | None = None,
) -> Path:
    """Fit ``ranking.model`` on every logged impression; returns the published bundle.

    Served traffic still in the event log is compacted into the tables first, so what the
    engine served and logged is trained on (the loop closes).

    Args:
        workspace: the workspace whose logs are trained on.
        ranking: the model and its training settings.
        progress: per-epoch callback.
        settings: the configuration the new bundle is checked with (default: the workspace's,
            with ``ranking``).
        backend: where the model is fitted (default: here; :class:`~shopsearch.training.
            distributed_train.RayTraining`: on a Ray cluster).
    """
    check_model_name(ranking.model)
    settings = (settings or load_settings(workspace.root)).model_copy(update={"ranking": ranking})
    old = current_bundle(workspace)
    meta = bundle_meta(old)
    compact_event_log(workspace)
    similarity = bundle_similarity(old)
    relevance = bundle_relevance(old, workspace)
    pair_features = {RELEVANCE: relevance} if relevance is not None else None
    samples = build_samples(workspace.connect(), similarity=similarity, pair_features=pair_features)
    config = TrainConfig(epochs=ranking.epochs)
    ranker = train_ranker(
        samples, ranking.model, ranking.position_bias, config, progress=progress, backend=backend
    )
    if similarity is not None:
        ranker.info["dense_space"] = similarity.space
    bundle = new_bundle_dir(workspace)
    for child in old.iterdir():
        if child.is_dir() and child.name != RANKING_DIR:
            shutil.copytree(child, bundle / child.name)
    ranker.save(bundle / RANKING_DIR)
    stages = dict(meta.get("stages", {}) or {})  # type: ignore[call-overload]
    stages[RANKING_DIR] = RANKING_DIR
    new_meta: dict[str, object] = {
        **{k: v for k, v in meta.items() if k not in ("created", "id")},
        "stages": stages,
        "ranking": {
            "model": ranking.model,
            "position_bias": ranking.position_bias,
            "impressions": len(samples),
            "dense_space": None if similarity is None else similarity.space,
            "relevance_feature": relevance is not None,
        },
    }
    publish_checked(workspace, settings, bundle, new_meta)
    return bundle


__all__ = ["bundle_relevance", "bundle_similarity", "train_ranking_bundle"]
