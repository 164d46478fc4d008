"""The ``query`` stage: the query as the later stages search for it.

No query model exists yet, so the stage passes the query on as typed (``identity``); query
understanding (spelling, intent, rewriting) will fill :class:`~..state.QueryInfo` here.
"""

from __future__ import annotations

from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import SearchState


@STAGES.register()
class QueryStage(Stage):
    """Pass the query on as typed."""

    name = "query"

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """Always present: without a model it is the identity."""
        return cls()

    def run(self, state: SearchState) -> Outcome:
        """Leave the query as typed."""
        state.query.text = state.params.query
        return Outcome("identity", "no query model in this bundle: searched as typed")
