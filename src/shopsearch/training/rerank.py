"""Train the re-ranking stage (PODM-MI diversity re-ranking) on a workspace's logs and publish
a bundle that serves it (``shopsearch train --stage rerank``).

Served traffic still in the event log is compacted into the tables first. The new bundle
copies the current one and adds ``rerank/`` (:class:`~shopsearch.rerank.diversity.podm_mi.
PODMMIReranker`: ``config.json``, ``users.json`` and ``.npy`` arrays); the ``rerank`` stage of
an engine serving it with ``[rerank] method = "podm-mi"`` re-orders every search's top
``[rerank] depth`` candidates by the searching user's learned diversity preference.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from shopsearch.config import Settings
from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.stages.rerank import RERANK_DIR
from shopsearch.progress import Say
from shopsearch.rerank.diversity.train import fit_podm_mi
from shopsearch.store.bundles import bundle_meta, current_bundle, new_bundle_dir
from shopsearch.store.workspace import Workspace
from shopsearch.training.publish import publish_checked


def train_rerank_bundle(
    workspace: Workspace, settings: Settings, say: Say | None = None, seed: int = 0
) -> Path:
    """Fit PODM-MI on the logs and publish a bundle with it; returns the bundle.

    Raises:
        InvalidInputError: the log holds no impressions.
        WorkspaceError: no current bundle to add to, or the new bundle does not load.
    """
    old = current_bundle(workspace)
    meta = bundle_meta(old)
    compact_event_log(workspace)
    model = fit_podm_mi(workspace, settings.rerank, seed, say)
    bundle = new_bundle_dir(workspace)
    try:
        for child in old.iterdir():
            if child.is_dir() and child.name != RERANK_DIR:
                shutil.copytree(child, bundle / child.name)
        model.save(bundle / RERANK_DIR)
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    stages = dict(meta.get("stages", {}) or {})  # type: ignore[call-overload]
    stages[RERANK_DIR] = RERANK_DIR
    new_meta: dict[str, object] = {
        **{k: v for k, v in meta.items() if k not in ("created", "id")},
        "stages": stages,
        "rerank": {"method": "podm-mi", **model.info_},
    }
    serving = settings.model_copy(
        update={"rerank": settings.rerank.model_copy(update={"method": "podm-mi"})}
    )
    publish_checked(workspace, serving, bundle, new_meta)
    return bundle


__all__ = ["train_rerank_bundle"]
