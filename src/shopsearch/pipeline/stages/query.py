"""The ``query`` stage: query understanding, as the later stages will search the query.

Runs the bundle's query components (``query/``: normalisation, spelling correction, intent,
rewriting; :class:`~shopsearch.query.models.QueryModels`) and puts what they found in
:class:`~..state.QueryInfo`: the text to search, the correction, the predicted categories, the
rewrites and the head words, each component's note for ``--explain``. Without query models in
the bundle (or with ``[query] enabled = false``) the query is searched as typed (``identity``).
"""

from __future__ import annotations

from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import SearchState
from shopsearch.query.models import QueryModels

#: The bundle folder of the query components.
QUERY_DIR = "query"


@STAGES.register()
class QueryStage(Stage):
    """Understand the query with the bundle's components (or pass it on as typed).

    Args:
        models: the fitted components (``None``: the identity).
    """

    name = "query"

    def __init__(self, models: QueryModels | None = None) -> None:
        self.models = models

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The bundle's query components; the identity when it has none."""
        folder = None if context.bundle is None else context.bundle / QUERY_DIR
        if not context.settings.query.enabled or folder is None or not folder.is_dir():
            return cls()
        return cls(QueryModels.load(folder))

    def run(self, state: SearchState) -> Outcome:
        """Fill the query's analysis."""
        query = state.query
        if self.models is None:
            query.text = state.params.query
            return Outcome("identity", "no query model in this bundle: searched as typed")
        skip = frozenset() if state.params.correct else frozenset({"spell"})
        analysis = self.models.analyze(state.params.query, state.params.domain, skip)
        query.text = analysis.text
        query.correction = analysis.correction
        query.intents = analysis.intents
        query.rewrites = analysis.rewrites
        query.head = analysis.head
        query.notes = dict(analysis.notes)
        done = "; ".join(f"{name}: {note}" for name, note in analysis.notes.items())
        return Outcome("ran", done or f"{', '.join(self.models.names)}: nothing to change")
