"""Per-domain feature importances of a bundle's CDAN-W ranking model.

:func:`domain_importances` reads the current bundle's ``ranking/`` folder and returns, per
domain name, the mean attention weight CDAN-W's domain-specific attention gave each feature
group over the training rows (:meth:`~shopsearch.transfer.cdan_w.CDANW.domain_importances`).
"""

from __future__ import annotations

from pathlib import Path

import orjson

from shopsearch.errors import InvalidInputError
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace


def domain_importances(
    workspace: Workspace, bundle: Path | None = None
) -> dict[str, dict[str, float]]:
    """``{domain: {feature group: weight}}`` of the bundle's ``cdan-w`` model.

    Raises:
        InvalidInputError: the bundle has no ranking model, or it is not ``cdan-w``.
    """
    folder = (bundle or current_bundle(workspace)) / "ranking"
    config = folder / "config.json"
    fix = f"train one with 'shopsearch train -w {workspace.root} --stage ranking --model cdan-w'"
    if not config.exists():
        raise InvalidInputError(
            f"the current bundle {folder.parent.name} has no ranking model; {fix}"
        )
    name = str(orjson.loads(config.read_bytes()).get("model"))
    if name != "cdan-w":
        raise InvalidInputError(
            f"the current bundle's ranking model is {name!r}, not 'cdan-w', so it has no "
            f"per-domain feature attention; {fix}"
        )
    from shopsearch.ranking.ranker import Ranker  # torch: only when needed
    from shopsearch.transfer.cdan_w import CDANW

    ranker = Ranker.load(folder)
    inner = getattr(ranker.model, "inner", ranker.model)
    if not isinstance(inner, CDANW):
        raise InvalidInputError(f"{folder} does not hold a CDAN-W model; {fix}")
    names = ranker.encoder.sparse_vocab_["domain"]
    out: dict[str, dict[str, float]] = {}
    for domain_id, weights in inner.domain_importances().items():
        label = names[domain_id - 1] if 0 < domain_id <= len(names) else "(unknown)"
        out[label] = weights
    return out


__all__ = ["domain_importances"]
