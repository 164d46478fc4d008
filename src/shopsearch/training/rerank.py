"""Train the re-ranking stage (PODM-MI diversity re-ranking) on a workspace's logs and publish
a bundle that serves it (``shopsearch train --stage rerank``).

Served traffic still in the event log is compacted into the tables first. The new bundle
copies the current one and adds ``rerank/`` (:class:`~shopsearch.rerank.diversity.podm_mi.
PODMMIReranker`: ``config.json``, ``users.json`` and ``.npy`` arrays); the ``rerank`` stage of
an engine serving it with ``[rerank] method = "podm-mi"`` re-orders every search's top
``[rerank] depth`` candidates by the searching user's learned diversity preference.
"""

from __future__ import annotations

from pathlib import Path

from shopsearch.config import Settings
from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.stages.rerank import RERANK_DIR
from shopsearch.progress import Say
from shopsearch.rerank.diversity.train import fit_podm_mi
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.training.publish import publish_stage


def train_rerank_bundle(
    workspace: Workspace, settings: Settings, say: Say | None = None, seed: int = 0
) -> Path:
    """Fit PODM-MI on the logs and publish a bundle with it; returns the bundle.

    Raises:
        InvalidInputError: the log holds no impressions.
        WorkspaceError: no current bundle to add to, or the new bundle does not load.
    """
    old = current_bundle(workspace)
    compact_event_log(workspace)
    model = fit_podm_mi(workspace, settings.rerank, seed, say)
    serving = settings.model_copy(
        update={"rerank": settings.rerank.model_copy(update={"method": "podm-mi"})}
    )
    meta = {"rerank": {"method": "podm-mi", **model.info_}}
    return publish_stage(workspace, serving, old, RERANK_DIR, model.save, meta)


__all__ = ["train_rerank_bundle"]
