"""Publishing a trained bundle: only one that loads and answers a search becomes current.

Every training pipeline (``index``, ``train --stage ...``) builds its bundle in a new directory
and ends here: the bundle is loaded as :class:`~shopsearch.pipeline.engine.Engine` and searched
once; a bundle that fails either is deleted and the error raised, and the current bundle stays
current. A running ``shopsearch serve`` then hot-reloads the new one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from shopsearch.config import Settings
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.store.bundles import bundle_meta, make_current, new_bundle_dir, write_bundle_meta
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


def publish_stage(
    workspace: Workspace,
    settings: Settings,
    old: Path,
    folder: str,
    save: Callable[[Path], object],
    meta: Mapping[str, object],
    query: str = "",
) -> Path:
    """Publish a new bundle: ``old`` with the stage folder ``folder`` written by ``save``
    (replacing ``old``'s), and ``meta`` (the stage's entry) added to ``old``'s metadata.

    Returns:
        The new bundle, current once it loaded and answered ``query``.

    Raises:
        Exception: whatever writing, loading or searching raised (the bundle is then deleted).
    """
    bundle = new_bundle_dir(workspace)
    try:
        for child in old.iterdir():
            if child.is_dir() and child.name != folder:
                shutil.copytree(child, bundle / child.name)
        save(bundle / folder)
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    before = bundle_meta(old)
    stages = dict(before.get("stages", {}) or {})  # type: ignore[call-overload]
    stages[folder] = folder
    new_meta: dict[str, object] = {
        **{k: v for k, v in before.items() if k not in ("created", "id")},
        "stages": stages,
        **meta,
    }
    publish_checked(workspace, settings, bundle, new_meta, query)
    return bundle


__all__ = ["publish_checked", "publish_stage"]
