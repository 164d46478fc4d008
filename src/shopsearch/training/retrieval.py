"""Train the learned retrievers on a workspace's logs (or judgments) and publish a bundle that
serves them (``shopsearch train --stage retrieval``).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

import orjson

from shopsearch.config import Settings
from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.stages.rank import RANKING_DIR, vector_finder
from shopsearch.progress import Say, StepProgress
from shopsearch.ranking.ranker import Ranker
from shopsearch.retrieval.base import Retriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.learned_train import (
    FUSION_HOLDOUT,
    LearnedConfig,
    TwoTowerBackend,
    catalog_of,
    item_texts,
    source_name,
    train_learned,
    workspace_pages,
    workspace_samples,
)
from shopsearch.store.atomic import write_json
from shopsearch.store.bundles import bundle_meta, current_bundle, new_bundle_dir
from shopsearch.store.workspace import Workspace
from shopsearch.training.fusion import fit_workspace_fusion, latest_requests
from shopsearch.training.publish import publish_checked


def train_retrieval_bundle(
    workspace: Workspace,
    settings: Settings,
    models: Sequence[str] = (),
    progress: StepProgress | None = None,
    say: Say | None = None,
    backend: TwoTowerBackend | None = None,
) -> Path:
    """Train the learned retrievers and publish a new current bundle that serves them
    (``backend``: where the two-tower encoders are fitted; default: here).

    Returns:
        The published bundle directory.

    Raises:
        InvalidInputError: no products, no events and no judgments, or an unknown model.
        WorkspaceError: no current bundle to add to, or the new bundle does not load (it is then
            deleted and the current bundle stays current).
    """

    cache_dir = workspace.dir("cache") / "embeddings"
    config = LearnedConfig.from_settings(settings.retrieval, models, cache_dir)
    products = catalog_of(workspace)
    old = current_bundle(workspace)
    meta = bundle_meta(old)
    compact_event_log(workspace)
    texts = item_texts(products)
    weighted = settings.retrieval.fusion == "weighted"
    holdout: list[str] = []
    train_ids: list[str] | None = None
    if weighted and workspace.count("requests"):
        train_ids, holdout = latest_requests(workspace, FUSION_HOLDOUT)
    log = workspace_samples(workspace, texts, train_ids)
    if "genrec" in config.models:
        pages = workspace_pages(workspace, train_ids, settings.retrieval.genrec.history)
        log = dataclasses.replace(log, pages=pages)
    learned = train_learned(log, products, config, progress, say, backend)

    bundle = new_bundle_dir(workspace)
    try:
        for child in old.iterdir():
            if child.is_dir():
                shutil.copytree(child, bundle / child.name)
        retrieval_dir = bundle / "retrieval"
        hybrid = HybridRetriever.load(retrieval_dir)
        sources: dict[str, Retriever] = dict(hybrid.sources)
        replaced = settings.retrieval.learned_use == "replace-dense"
        for i, (model, learned_source) in enumerate(learned.retrievers.items()):
            name = "dense" if replaced and i == 0 else source_name(model)
            if name in sources:
                shutil.rmtree(retrieval_dir / name, ignore_errors=True)
            learned_source.fit_matches()
            sources[name] = learned_source
        new = HybridRetriever(sources, "rrf", hybrid.per_source_k, hybrid.rrf_constant)
        fusion = "rrf"
        if weighted and holdout:
            fusion = fit_workspace_fusion(new, workspace, texts, holdout, say, config.seed)
        elif weighted and say is not None:
            say("no held-out logged clicks to fit fusion weights on; using rrf")
        new.save(retrieval_dir)  # copied sources rewrite small files; learned ones are new
        stages = dict(meta.get("stages", {}) or {})  # type: ignore[call-overload]
        stages["retrieval"] = "retrieval"
        dropped = _drop_stale_ranking(bundle, new)
        if dropped:
            stages.pop(RANKING_DIR, None)
            if say is not None:
                say(dropped)
        info = {
            "models": list(learned.retrievers),
            "sources": list(sources),
            "use": settings.retrieval.learned_use,
            "fusion": fusion,
            "weights": new.weighting_.weights_ if fusion == "weighted" else None,
            "trained_on": log.source,
            "requests": log.requests,
            "queries": len(log.samples.queries),
            "pairs": len(log.samples.stage),
            "per_model": learned.info,
            "ranking_dropped": dropped or None,
        }
        write_json(bundle / "retrieval" / "learned.json", info)
        kept = {k: v for k, v in meta.items() if k not in ("created", "id")}
        full = {**kept, "stages": stages, "learned_retrieval": orjson.loads(orjson.dumps(info))}
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    publish_checked(workspace, settings, bundle, full, log.samples.queries[0])
    return bundle


def _drop_stale_ranking(bundle: Path, retrieval: HybridRetriever) -> str:
    """Remove the copied ranking model when it reads ``dense_sim`` in a vector space that no
    source of the new bundle holds (``learned_use = "replace-dense"`` replaced that source);
    returns what was done, in words (empty: the model was kept)."""
    folder = bundle / RANKING_DIR
    if not folder.is_dir():
        return ""
    space = Ranker.load(folder).dense_space
    if space is None or vector_finder(retrieval)(space) is not None:
        return ""
    shutil.rmtree(folder)
    return (
        f"the ranking model read dense_sim in vector space {space or 'of the old dense source'}, "
        "which this bundle no longer has; it was left out: train a new one on this bundle with "
        "'shopsearch train --stage ranking'"
    )


__all__ = ["train_retrieval_bundle"]
