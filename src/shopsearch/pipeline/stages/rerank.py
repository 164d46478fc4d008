"""The ``rerank`` stage: the last re-ordering before the page is cut.

No re-ranking model exists yet, so the stage shows the ranked order as it is (``identity``).
"""

from __future__ import annotations

from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import SearchState


@STAGES.register()
class RerankStage(Stage):
    """Keep the ranked order."""

    name = "rerank"

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """Always present: without a model it is the identity."""
        return cls()

    def run(self, state: SearchState) -> Outcome:
        """Leave the order as ranked."""
        return Outcome("identity", "no re-ranking model in this bundle: ranked order shown")
