"""The ``prerank`` stage: choose the candidates the ranking model re-scores.

With a pre-ranking model in the bundle (``prerank/``, ``shopsearch train --stage prerank``) and
``[prerank] enabled``, the light model (:mod:`shopsearch.prerank.hccp`) scores every candidate
retrieval passed on (``[retrieval] candidates`` of them, up to where the relevance gate's
demoted ones begin), sorts them by its score and marks the first ``[pipeline] prerank_keep`` as
the ranking window; it adds ``prerank.score`` per candidate. Without one (``identity``) the
first ``prerank_keep`` in retrieval's order are the window.
"""

from __future__ import annotations

import numpy as np

from shopsearch.catalog.lookup import ProductLookup
from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import SearchState
from shopsearch.prerank.base import product_text
from shopsearch.prerank.hccp import LightPreranker
from shopsearch.prerank.samples import upstream_features

#: The bundle folder of the pre-ranking model.
PRERANK_DIR = "prerank"


@STAGES.register()
class PrerankStage(Stage):
    """Keep the first ``keep`` candidates for ranking, ordered by the model when there is one.

    Args:
        keep: how many candidates the ranking model re-scores.
        model: the light pre-ranking model (``None``: retrieval's order).
        products: the catalog (the text of a product the model has no row for yet).
    """

    name = "prerank"

    def __init__(
        self,
        keep: int,
        model: LightPreranker | None = None,
        products: ProductLookup | None = None,
    ) -> None:
        self.keep = keep
        self.model = model
        self.products = products

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The stage with ``[pipeline] prerank_keep`` and the bundle's model, if any."""
        keep = context.settings.pipeline.prerank_keep
        folder = None if context.bundle is None else context.bundle / PRERANK_DIR
        if not context.settings.prerank.enabled or folder is None or not folder.is_dir():
            return cls(keep)
        return cls(keep, LightPreranker.load(folder), context.products)

    def run(self, state: SearchState) -> Outcome:
        """Score, sort and set the ranking window."""
        if self.model is None or not len(state.candidates):
            state.window = min(self.keep, len(state.candidates))
            state.window = state.reorderable()
            gated = "" if state.gated_from is None else " (the relevance gate demoted the rest)"
            return Outcome(
                "identity",
                f"no pre-ranking model in this bundle: the first {state.window} go to ranking"
                f"{gated}",
            )
        found = state.candidates
        depth = state.reorderable()
        keys = found.keys[:depth]
        upstream = upstream_features(found.scores[:depth], np.arange(1, depth + 1), depth)
        rows = self.model.rows_of(keys, lambda i: self._text(keys[i]), state.filters.domain)
        scores = self.model.score(state.query.text, rows, upstream)
        ranked = np.argsort(-scores)
        order = np.concatenate([ranked, np.arange(depth, len(found))]).astype(np.intp)
        column = np.full(len(found), np.nan)
        column[:depth] = scores
        state.add_column("prerank.score", column)
        final = np.concatenate([scores[ranked], found.scores[depth:]]).astype(np.float32)
        state.reorder(order, final)
        state.window = min(self.keep, depth)
        entered = int((ranked[: state.window] >= state.window).sum())
        return Outcome(
            "ran",
            f"{self.model.config.objective} scored {depth}, kept {state.window} for ranking "
            f"({entered} of them from below retrieval's first {state.window})",
        )

    def _text(self, key: tuple[str, str]) -> str:
        row = None if self.products is None else self.products.get(key)
        if row is None:
            return key[1]
        return product_text(row["title"], row["brand"], row["category"])
