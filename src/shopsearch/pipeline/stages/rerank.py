"""The ``rerank`` stage: the last re-ordering before the page is cut - diversity re-ranking.

``[rerank] method`` picks the re-ranker (:mod:`shopsearch.rerank.diversity`): ``podm-mi``, the
bundle's trained PODM-MI model (``rerank/`` folder, ``shopsearch train --stage rerank``), which
diversifies each user's list as much as that user's learned preference asks; ``mmr`` or ``dpp``,
the baselines, which need no model; ``none`` (or ``enabled = false``) skips the stage. Without
a PODM-MI model in the bundle the stage shows the ranked order (``identity``).

The first ``[rerank] depth`` candidates are re-ordered (never past those the relevance gate
demoted, which stay after the others); the rest keep their order after them. Each candidate
keeps its ranking score; the column ``rerank.utility`` holds the utility it had when the
re-ranker placed it, and ``--explain`` says how many of the first page's places changed.
"""

from __future__ import annotations

import numpy as np

from shopsearch.catalog.lookup import ProductLookup
from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import SearchState
from shopsearch.rerank.diversity.base import (
    FACET_COLUMNS,
    DiversityReranker,
    ProductFacets,
    facet_similarity,
    load_reranker,
)
from shopsearch.rerank.diversity.dpp import DPPReranker
from shopsearch.rerank.diversity.mmr import MMRReranker

#: The bundle folder of the re-ranking model.
RERANK_DIR = "rerank"

#: Places of the first page ``--explain`` compares before and after re-ranking.
PAGE = 10


@STAGES.register()
class RerankStage(Stage):
    """Re-order the top of the ranked list for diversity.

    Args:
        reranker: the diversity re-ranker (``None``: keep the ranked order).
        products: the engine's product lookup (category and brand of products added since the
            facets were read).
        facets: every product's facets (``None``: from ``products``, without attributes).
        depth: how many candidates from the top are re-ordered.
        why: what ``--explain`` says when ``reranker`` is ``None``.
    """

    name = "rerank"

    def __init__(
        self,
        reranker: DiversityReranker | None,
        products: ProductLookup,
        facets: ProductFacets | None = None,
        depth: int = 50,
        why: str = "",
    ) -> None:
        self.reranker = reranker
        self.products = products
        self.facets = facets
        self.depth = depth
        self.why = why

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The configured re-ranker, or why there is none."""
        settings = context.settings.rerank
        if not settings.enabled or settings.method == "none":
            return Absent(f"[rerank] {'method = none' if settings.enabled else 'enabled = false'}")
        reranker: DiversityReranker | None = None
        if settings.method == "mmr":
            reranker = MMRReranker(settings.mmr_lambda)
        elif settings.method == "dpp":
            reranker = DPPReranker(settings.dpp_theta)
        else:
            folder = None if context.bundle is None else context.bundle / RERANK_DIR
            if folder is None or not folder.is_dir():
                return cls(
                    None,
                    context.products,
                    why="no re-ranking model in this bundle (train one: shopsearch train "
                    "--stage rerank): ranked order shown",
                )
            reranker = load_reranker(folder)
        facets = None
        if context.workspace is not None:
            facets = ProductFacets(context.workspace.table("products", list(FACET_COLUMNS)))
        return cls(reranker, context.products, facets, settings.depth)

    def run(self, state: SearchState) -> Outcome:
        """Re-order the first ``depth`` candidates."""
        if self.reranker is None:
            return Outcome("identity", self.why)
        n = min(self.depth, state.reorderable(), len(state.candidates))
        if n < 2:
            return Outcome("ran", "fewer than 2 candidates to re-rank")
        keys = list(state.candidates.keys[:n])
        if self.facets is not None:
            rows = self.facets.rows(keys, fallback=self.products.get)
        else:
            rows = list(self.products.many(keys))
        similarity = facet_similarity(rows)
        scores = np.asarray(state.candidates.scores[:n], dtype=np.float64)
        result = self.reranker.rerank(scores, similarity, state.params.user_id, depth=n)
        total = len(state.candidates)
        order = np.concatenate([result.order, np.arange(n, total)]).astype(np.intp)
        utility = np.full(total, np.nan)
        utility[result.order] = result.utility
        state.add_column("rerank.utility", utility)
        state.reorder(order, state.candidates.scores[order])
        page = min(PAGE, n)
        moved = int((result.order[:page] != np.arange(page)).sum())
        return Outcome(
            "ran",
            f"{self.reranker.name} re-ordered the first {n}; {moved} of the first {page} "
            "places changed",
        )
