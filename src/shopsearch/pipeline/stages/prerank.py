"""The ``prerank`` stage: choose the candidates the ranking model re-scores.

No pre-ranking model exists yet, so the stage keeps the first ``[pipeline] prerank_keep``
candidates in retrieval's order (``identity``) and marks them as the ranking window; the window
ends where the candidates the relevance gate demoted begin.
"""

from __future__ import annotations

from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import SearchState


@STAGES.register()
class PrerankStage(Stage):
    """Keep the first ``keep`` candidates for ranking.

    Args:
        keep: how many candidates the ranking model re-scores.
    """

    name = "prerank"

    def __init__(self, keep: int) -> None:
        self.keep = keep

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The stage with ``[pipeline] prerank_keep``."""
        return cls(context.settings.pipeline.prerank_keep)

    def run(self, state: SearchState) -> Outcome:
        """Set the ranking window."""
        state.window = min(self.keep, len(state.candidates))
        state.window = state.reorderable()
        gated = "" if state.gated_from is None else " (the relevance gate demoted the rest)"
        return Outcome(
            "identity",
            f"no pre-ranking model in this bundle: the first {state.window} go to ranking{gated}",
        )
