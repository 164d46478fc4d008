"""Fit PODM-MI on a workspace's logged lists (what ``shopsearch train --stage rerank`` and the
``rerank`` part of ``shopsearch eval stages`` both call)."""

from __future__ import annotations

from shopsearch.config import RerankSettings
from shopsearch.progress import Say
from shopsearch.rerank.diversity.base import FACET_COLUMNS, ProductFacets
from shopsearch.rerank.diversity.podm_mi import PODMMIReranker
from shopsearch.rerank.diversity.samples import logged_lists
from shopsearch.store.workspace import Workspace


def fit_podm_mi(
    workspace: Workspace, settings: RerankSettings, seed: int = 0, say: Say | None = None
) -> PODMMIReranker:
    """PODM-MI fitted on the most recent ``settings.max_lists`` logged requests of
    ``workspace`` (the event log should be compacted first to include served traffic)."""
    tell = say or (lambda _message: None)
    facets = ProductFacets(workspace.table("products", list(FACET_COLUMNS)))
    lists = logged_lists(workspace.connect(), facets, max_lists=settings.max_lists)
    tell(f"learning diversity preferences of {len(lists.users)} users from {len(lists)} lists")

    def epoch(done: int, total: int, loss: float) -> None:
        tell(f"epoch {done}/{total}: click loss {loss:.5f}")

    model = PODMMIReranker(dims=settings.dims, epochs=settings.epochs, seed=seed)
    return model.fit(lists, progress=epoch)


__all__ = ["fit_podm_mi"]
