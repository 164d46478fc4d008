"""Train the query-understanding components on a workspace's logs (or judgments) and publish
a bundle that runs them (``shopsearch train --stage query``).

The new bundle copies the current one and adds ``query/`` (:class:`~shopsearch.query.models.
QueryModels`); the query stage of an engine serving it runs the components on every search.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError
from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.stages.query import QUERY_DIR
from shopsearch.progress import Say
from shopsearch.query.base import QUERY_COMPONENTS, default_components
from shopsearch.query.data import QueryData
from shopsearch.query.models import QueryModels
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.training.publish import publish_stage


def query_component_names(names: Sequence[str]) -> list[str]:
    """``names`` checked against the registry; when empty, the default components
    (:func:`~shopsearch.query.base.default_components`).

    Raises:
        InvalidInputError: an unknown name, or no component registered at all.
    """
    chosen = list(dict.fromkeys(names)) or default_components()
    for name in chosen:
        QUERY_COMPONENTS.get(name)
    if not chosen:
        raise InvalidInputError("no query component is registered; nothing to train")
    return chosen


def train_query_bundle(
    workspace: Workspace,
    settings: Settings,
    names: Sequence[str] = (),
    say: Say | None = None,
) -> Path:
    """Fit the query components ``names`` (default: all but baselines) and publish a bundle
    with them.

    Raises:
        InvalidInputError: no products, no log and no judgments, or an unknown component.
        WorkspaceError: no current bundle to add to, or the new bundle does not load.
    """
    tell = say or (lambda _message: None)
    chosen = query_component_names(names)
    old = current_bundle(workspace)
    compact_event_log(workspace)
    data = QueryData.from_workspace(workspace)
    tell(
        f"learning from {len(data.queries)} logged queries and {len(data.outcomes)} outcomes "
        f"({data.source}) and {len(data.catalog)} products"
    )
    components = []
    for name in chosen:
        tell(f"fitting {name}")
        components.append(QUERY_COMPONENTS.get(name)().fit(data))
    models = QueryModels(components)
    meta: dict[str, object] = {
        "query": {
            "components": models.names,
            "trained_on": data.source,
            "queries": len(data.queries),
        },
    }
    first = data.queries["query"].iloc[0] if len(data.queries) else ""
    return publish_stage(workspace, settings, old, QUERY_DIR, models.save, meta, str(first))


__all__ = ["query_component_names", "train_query_bundle"]
