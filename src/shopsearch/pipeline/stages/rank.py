"""The ``rank`` stage: the bundle's ranking model re-scores the pre-ranking window.

Present when the bundle has a ``ranking/`` folder and ``[ranking] enabled`` is true; otherwise
skipped, and ``--explain`` says why. A model that reads ``dense_sim`` gets the retrieval source
whose vectors are in the space it was trained with (:attr:`~shopsearch.ranking.ranker.Ranker.
dense_space`), and the query vector retrieval computed in that space; a bundle without such a
source does not load (a model trained on one encoder's cosines is never fed another's).
The query's most likely predicted category (query understanding's intent) is the ranking
feature ``query_leaf`` of a query the log never saw acted on. A model trained with the
``relevance`` feature reads the relevance stage's column (it does not load when that stage will
not run). Candidates the relevance gate demoted are never lifted above the others. Torch is
imported only when a bundle has a model. Adds ``rank.click``, ``rank.cart``,
``rank.purchase`` and ``rank.value`` per candidate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.stages.relevance import RELEVANCE_DIR
from shopsearch.pipeline.state import SearchState
from shopsearch.ranking.dense_feature import VectorSource
from shopsearch.ranking.feature_names import RELEVANCE
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.registry import RETRIEVERS

if TYPE_CHECKING:
    from shopsearch.ranking.stage import RankingStage

F64 = npt.NDArray[np.float64]

#: The bundle folder of the ranking model.
RANKING_DIR = "ranking"

#: Finds the source of a vector space (``""``: the bundle's plain ``dense`` source).
VectorFinder = Callable[[str], VectorSource | None]


def vector_finder(retrieval: HybridRetriever) -> VectorFinder:
    """How the ranking stage finds the source of a vector space in ``retrieval``."""

    def find(space: str) -> VectorSource | None:
        if space:
            source = retrieval.vector_source(space)
        else:  # a model saved before spaces were recorded was trained on the plain dense source
            source = retrieval.sources.get("dense")
            if source is not None and RETRIEVERS.name_of(source) != "dense":
                source = None
        # a source with the "vectors" capability is a VectorSource
        return cast(VectorSource, source) if source is not None else None

    return find


def _check_relevance(context: StageContext) -> None:
    """Refuse a ranking model that reads ``relevance`` when no relevance stage will compute it.

    Raises:
        WorkspaceError: the relevance stage is switched off, not listed before ``rank``, or
            the bundle has no relevance model.
    """
    stages = context.settings.pipeline.stages
    problem = ""
    if not context.settings.relevance.enabled:
        problem = "[relevance] enabled = false"
    elif "relevance" not in stages or stages.index("relevance") > stages.index("rank"):
        problem = "[pipeline] stages does not run 'relevance' before 'rank'"
    elif context.bundle is None or not (context.bundle / RELEVANCE_DIR).is_dir():
        problem = "the bundle has no relevance/ model"
    if problem:
        raise WorkspaceError(
            f"bundle {context.bundle}: the ranking model was trained with the relevance feature "
            f"but {problem}; serve it with the relevance stage, or retrain the ranking stage "
            "('shopsearch train --stage ranking')"
        )


@STAGES.register()
class RankStage(Stage):
    """Re-score the window with the ranking model and sort by value.

    Args:
        ranking: the loaded ranking model with its serving features.
    """

    name = "rank"

    def __init__(self, ranking: RankingStage) -> None:
        self.ranking = ranking

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The bundle's ranking model, or why there is none.

        Raises:
            WorkspaceError: the model reads ``dense_sim`` in a vector space no source of the
                bundle holds.
        """
        if not context.settings.ranking.enabled:
            return Absent("[ranking] enabled = false")
        folder = None if context.bundle is None else context.bundle / RANKING_DIR
        if folder is None or not folder.is_dir() or context.workspace is None:
            return Absent(
                "no ranking model in this bundle (train one: shopsearch train --stage ranking)"
            )
        from shopsearch.ranking.stage import RankingStage  # torch: only when a model exists

        try:
            ranking = RankingStage.load(
                folder,
                context.workspace,
                context.settings.ranking,
                vector_finder(context.retrieval),
            )
        except InvalidInputError as exc:
            raise WorkspaceError(f"bundle {context.bundle}: {exc}") from exc
        if RELEVANCE in ranking.pipeline_features:
            _check_relevance(context)
        return cls(ranking)

    def run(self, state: SearchState) -> Outcome:
        """Re-order the first ``state.window`` candidates by the model's value."""
        if not len(state.candidates):
            return Outcome("ran", "no candidates")
        depth = state.reorderable()
        space = self.ranking.vector_space
        given: dict[str, F64] = {}
        for name in self.ranking.pipeline_features:
            if name not in state.columns:
                raise WorkspaceError(
                    f"the ranking model reads {name!r}, which no earlier stage of this search "
                    "computed; run the relevance stage before rank"
                )
            given[name] = state.columns[name]
        ranked = self.ranking.rank(
            state.candidates,
            state.query.text,
            state.params.user_id,
            depth,
            state.query.vectors.get(space) if space else None,
            state.query.intents[0][0] if state.query.intents else "",
            given,
        )
        for task, values in ranked.columns.items():
            state.add_column(f"rank.{task}", values)
        state.reorder(ranked.order, ranked.scores)
        scored = min(depth, len(ranked.order))
        return Outcome("ran", f"{self.ranking.ranker.name} re-scored {scored}")
