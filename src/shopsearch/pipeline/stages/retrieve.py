"""The ``retrieve`` stage: every candidate source of the bundle, fused.

Runs :meth:`~shopsearch.retrieval.hybrid.HybridRetriever.search` — the one retrieval path —
for ``state.depth`` candidates, and hands on the fused candidates, the facets, each source's
score of each candidate (``retrieve.<source>``, plus ``retrieve.fused``), each source's time
(``retrieve.<source>``, ``retrieve.fusion``) and the query's vector per vector space. What
query understanding found becomes a :class:`~shopsearch.retrieval.base.QueryPlan`: its
rewrites, its head words, and a boost of ``[query] intent_boost`` × probability for each
predicted category at least ``[query] intent_min_probability`` likely. When a source reads the
user's history (the ``history`` capability, e.g. ``genrec``), the plan also carries the
products the request's ``user_id`` interacted with in the workspace's log, most recent first
(:class:`~shopsearch.retrieval.generative.pages.UserHistories`, read when the bundle loads;
searches logged after that join at the next load).
"""

from __future__ import annotations

import time

import numpy as np

from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.config import QuerySettings
from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.state import QueryInfo, SearchState
from shopsearch.retrieval.base import QueryPlan
from shopsearch.retrieval.generative.pages import HISTORY_SIZE, UserHistories
from shopsearch.retrieval.hybrid import HybridRetriever


@STAGES.register()
class RetrieveStage(Stage):
    """Search every source and fuse.

    Args:
        retrieval: the bundle's sources and fusion.
        query: query understanding's settings.
        histories: the users' histories, for sources that read them (``None``: none).
    """

    name = "retrieve"

    def __init__(
        self,
        retrieval: HybridRetriever,
        query: QuerySettings | None = None,
        histories: UserHistories | None = None,
    ) -> None:
        self.retrieval = retrieval
        self.query = query or QuerySettings()
        self.histories = histories

    @classmethod
    def load(cls, context: StageContext) -> Stage | Absent:
        """The stage over the bundle's retriever (with the log's user histories when a source
        reads them)."""
        histories = None
        if context.workspace is not None and "history" in context.retrieval.capabilities:
            workspace = context.workspace
            histories = UserHistories(
                workspace.table("requests", ["request_id", "user_id", "domain", "query",
                                             "timestamp"]),
                workspace.table("impressions", ["request_id", "product_id", "position"]),
                workspace.table("interactions", ["request_id", "product_id", "kind"]),
            )  # fmt: skip
        return cls(context.retrieval, context.settings.query, histories)

    def plan(self, query: QueryInfo, user_id: str | None = None) -> QueryPlan | None:
        """What query understanding adds to the words, and the history of ``user_id`` for
        sources that read it (``None``: nothing)."""
        floor, weight = self.query.intent_min_probability, self.query.intent_boost
        boosts = tuple(
            (tuple(p.strip() for p in path.split(CATEGORY_SEPARATOR.strip())), weight * prob)
            for path, prob in query.intents
            if prob >= floor and weight > 0
        )
        history: tuple[tuple[str, str], ...] = ()
        stages: tuple[float, ...] = ()
        if self.histories is not None and user_id:
            now_us = time.time_ns() // 1000
            history, stages = self.histories.before(user_id, now_us, HISTORY_SIZE)
        plan = QueryPlan(tuple(query.rewrites), boosts, tuple(query.head), history, stages)
        return None if plan.is_empty() else plan

    def run(self, state: SearchState) -> Outcome:
        """Fill the candidates, facets, score columns and query vectors."""
        hits = self.retrieval.search(
            state.query.text, state.depth, state.filters,
            self.plan(state.query, state.params.user_id),
        )  # fmt: skip
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
