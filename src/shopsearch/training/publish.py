"""Publishing a trained bundle: only one that loads and answers a search becomes current.

Every training pipeline (``index``, ``train --stage ...``) builds its bundle in a new directory
and ends here: the bundle is loaded as :class:`~shopsearch.pipeline.engine.Engine` and searched
once; a bundle that fails either is deleted and the error raised, and the current bundle stays
current. A running ``shopsearch serve`` then hot-reloads the new one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from shopsearch.config import Settings
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.store.bundles import make_current, write_bundle_meta
from shopsearch.store.workspace import Workspace


def publish_checked(
    workspace: Workspace,
    settings: Settings,
    bundle: Path,
    meta: dict[str, object],
    query: str = "",
) -> Engine:
    """Load ``bundle``, search it for ``query``, then make it current; returns its engine.

    Raises:
        Exception: whatever loading or searching raised (the bundle is then deleted).
    """
    try:
        write_bundle_meta(bundle, meta)
        engine = Engine.load(workspace, settings, bundle)
        text = (query or "check").strip()[: settings.search.max_query_chars] or "check"
        engine.search(SearchParams(text, size=1))
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    make_current(workspace, bundle)
    return engine


__all__ = ["publish_checked"]
