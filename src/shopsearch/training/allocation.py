"""Train the traffic allocation stage (MODRL-TA) on a workspace's logs; publish it in a bundle.

``shopsearch train -w W --stage allocation``: the logged impressions (with whether each was
clicked and bought, and whether the product is new: created less than ``[allocation]
new_days`` days before the first logged request) train
:class:`~shopsearch.rerank.allocation.MODRLTA`. The first time, every transition is
*simulated* from the logs (progressive data augmentation's start); when the current bundle
already has an allocation model, the logs after the time it was trained up to were served
with it, so they are *live* interactions and replace the simulated ones progressively
(``[allocation] ramp_days``). The fusion weights are chosen on the windows the current bundle
ranks for the last 300 logged requests. The new bundle copies the current bundle's other
stages and adds ``allocation/``; its meta records ``trained_until`` (the last logged request)
and the date new products are counted from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from shopsearch.config import Settings, load_settings
from shopsearch.errors import InvalidInputError
from shopsearch.events.compaction import compact_event_log
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stages.allocate import ALLOCATION_DIR
from shopsearch.rerank.allocation import MODRLTA
from shopsearch.rerank.allocation.logs import (
    allocation_frames,
    make_model,
    new_since,
    recent_requests,
)
from shopsearch.store.bundles import bundle_meta, current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.training.publish import publish_stage

#: Recent logged requests whose ranked windows the fusion weights are chosen on.
CEM_REQUESTS = 300


def ranked_windows(
    workspace: Workspace, settings: Settings, bundle: Path, requests: list[tuple[str, str, str]]
) -> list[list[tuple[str, str]]]:
    """The windows the allocator would face for ``requests`` ``(query, domain, user)``: the
    bundle's ranked first ``[allocation] window`` results, allocation switched off."""
    off = settings.allocation.model_copy(update={"enabled": False})
    engine = Engine.load(workspace, settings.model_copy(update={"allocation": off}), bundle)
    limits = settings.search
    size = min(settings.allocation.window, limits.max_size)
    out = []
    for query, domain, user in requests:
        text = query[: limits.max_query_chars]
        if domain not in engine.products.domains() or not text.strip():
            continue
        items = engine.search(SearchParams(text, domain=domain, user_id=user, size=size)).items
        out.append([(i.domain, i.product_id) for i in items if i.domain == domain])
    return out


def train_allocation_bundle(
    workspace: Workspace,
    settings: Settings | None = None,
    say: Callable[[str], None] | None = None,
) -> Path:
    """Fit the allocator on the workspace's logs and publish a bundle with it (see the module
    docstring); returns the bundle."""
    tell = say or (lambda _message: None)
    settings = settings or load_settings(workspace.root)
    old = current_bundle(workspace)
    compact_event_log(workspace)
    con = workspace.connect()
    since = new_since(con, settings.allocation.new_days)
    logs, catalog = allocation_frames(con, since)
    if logs.empty:
        raise InvalidInputError("the workspace has no logged impressions to train on")
    previous = bundle_meta(old).get("allocation")
    live_since = None
    init = None
    if isinstance(previous, dict) and previous.get("trained_until"):
        live_since = pd.Timestamp(str(previous["trained_until"]))
        if (old / ALLOCATION_DIR).is_dir():
            init = MODRLTA.load(old / ALLOCATION_DIR).weights_
    tell(
        f"allocation: {len(logs):,} impressions, {int(catalog['new'].sum()):,} new products "
        f"(created since {since.date()}); live since {live_since or 'never (all simulated)'}"
    )
    windows = ranked_windows(workspace, settings, old, recent_requests(con, CEM_REQUESTS))
    model = make_model(settings.allocation).fit(logs, catalog, live_since, init, windows)
    tell(f"allocation: fusion weights {model.info_['weights']}")
    meta: dict[str, object] = {
        "allocation": {
            "model": "modrl-ta",
            "trained_until": str(pd.Timestamp(logs["timestamp"].max())),
            "new_since": str(since),
            "live_since": None if live_since is None else str(live_since),
            **{k: v for k, v in model.info_.items() if k != "weights"},
            "weights": model.info_["weights"],
            "new_products": int(np.sum(catalog["new"])),
        },
    }
    return publish_stage(workspace, settings, old, ALLOCATION_DIR, model.save, meta)


__all__ = ["ranked_windows", "train_allocation_bundle"]
