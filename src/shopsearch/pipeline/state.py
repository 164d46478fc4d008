"""The state one search carries from stage to stage.

A stage reads and changes one :class:`SearchState`: the query as understood so far
(:class:`QueryInfo`), the ordered candidates, the facets, and per-candidate score columns for
``--explain``. Re-ordering goes through :meth:`SearchState.reorder`, which keeps every column
aligned with the candidates, so no stage has to know the others' columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from shopsearch.catalog.candidates import Candidates, Facets, Filters
from shopsearch.pipeline.request import SearchParams

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass
class QueryInfo:
    """The query as the stages see it.

    Attributes:
        original: what the user typed.
        text: what later stages search for (the query stage may correct or rewrite it).
        vectors: the query's vector per vector space, filled by retrieval's vector sources
            (later stages reuse them instead of encoding the query again).
        notes: what the query stage found, per component, for ``--explain``.
        correction: the corrected query when spelling correction changed it.
        intents: ``(category path, probability)`` pairs, most likely first.
        rewrites: ``(extra query, weight)`` pairs retrieval also searches for.
        head: the words naming the product type, which must match.
    """

    original: str
    text: str
    vectors: dict[str, F32] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    correction: str | None = None
    intents: list[tuple[str, float]] = field(default_factory=list)
    rewrites: list[tuple[str, float]] = field(default_factory=list)
    head: tuple[str, ...] = ()


@dataclass
class SearchState:
    """One search in progress.

    Attributes:
        params: the request.
        filters: the effective filters (the request's, with its domain).
        depth: how many candidates retrieval hands on (at least the requested page's end).
        query: the query as understood so far.
        candidates: the candidates, best first by the latest stage.
        facets: facet counts of the matched set.
        total: how many products matched (the matched set: see
            :meth:`~shopsearch.retrieval.hybrid.HybridRetriever.search`).
        window: how many of the first candidates the next re-ordering stage may re-score
            (the pre-ranking stage sets it; the rest keep their order after them).
        gated_from: where the candidates the relevance gate demoted begin (``None``: none
            demoted); no later stage re-orders them above the others.
        columns: per-candidate scores by name (``retrieve.lexical``, ``rank.value`` ...),
            aligned with ``candidates``; ``nan`` where a stage did not score a candidate.
        timings_ms: sub-stage timings a stage adds (``retrieve.lexical`` ...).
    """

    params: SearchParams
    filters: Filters
    depth: int
    query: QueryInfo
    candidates: Candidates = field(default_factory=Candidates.empty)
    facets: Facets = field(default_factory=dict)
    total: int = 0
    window: int | None = None
    gated_from: int | None = None
    columns: dict[str, F64] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def add_column(self, name: str, values: npt.ArrayLike) -> None:
        """Add one score per candidate under ``name``."""
        column = np.asarray(values, dtype=np.float64)
        if column.shape != (len(self.candidates),):
            raise ValueError(f"column {name!r} has {column.shape}, not {len(self.candidates)}")
        self.columns[name] = column

    def reorderable(self) -> int:
        """How many of the first candidates a re-ordering stage may re-order: the window (all
        when unset), never past the candidates the relevance gate demoted."""
        depth = self.window if self.window is not None else len(self.candidates)
        return depth if self.gated_from is None else min(depth, self.gated_from)

    def reorder(self, order: npt.NDArray[np.intp], scores: F32) -> None:
        """Put the candidates in ``order`` (indices into the current list) with new final
        ``scores`` (aligned with ``order``); every column follows. ``order`` may be shorter
        than the list: the rest are dropped."""
        old = self.candidates
        picked = order.tolist()
        self.candidates = Candidates(
            keys=[old.keys[i] for i in picked]
            if len(picked) < 2
            else list(itemgetter(*picked)(old.keys)),
            scores=np.asarray(scores, dtype=np.float32),
            total=old.total,
            sources={name: values[order] for name, values in old.sources.items()},
        )
        self.columns = {name: values[order] for name, values in self.columns.items()}


__all__ = ["QueryInfo", "SearchState"]
