"""The ``retrieve`` stage: every candidate source of the bundle, fused.

Runs :meth:`~shopsearch.retrieval.hybrid.HybridRetriever.search` — the one retrieval path —
for ``state.depth`` candidates, and hands on the fused candidates, the facets, each source's
score of each candidate (``retrieve.<source>``, plus ``retrieve.fused``), each source's time
(``retrieve.<source>``, ``retrieve.fusion``) and the query's vector per vector space.
"""

from __future__ import annotations

import numpy as np

from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import SearchState
from shopsearch.retrieval.hybrid import HybridRetriever


@STAGES.register()
class RetrieveStage(Stage):
    """Search every source and fuse.

    Args:
        retrieval: the bundle's sources and fusion.
    """

    name = "retrieve"

    def __init__(self, retrieval: HybridRetriever) -> None:
        self.retrieval = retrieval

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The stage over the bundle's retriever."""
        return cls(context.retrieval)

    def run(self, state: SearchState) -> Outcome:
        """Fill the candidates, facets, score columns and query vectors."""
        hits = self.retrieval.search(state.query.text, state.depth, state.filters)
        fused = hits.candidates
        state.candidates = fused
        state.facets = hits.facets or {}
        state.total = fused.total if fused.total is not None else len(fused)
        state.columns = {f"retrieve.{n}": v.astype(np.float64) for n, v in fused.sources.items()}
        state.columns["retrieve.fused"] = fused.scores.astype(np.float64)
        state.query.vectors.update(hits.query_vectors)
        state.timings_ms.update({f"retrieve.{k}": v for k, v in hits.timings_ms.items()})
        names = ", ".join(self.retrieval.sources)
        return Outcome("ran", f"{len(fused)} candidates from {names}, {self.retrieval.fusion}")
