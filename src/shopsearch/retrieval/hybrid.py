"""Hybrid retrieval: several candidate sources searched in turn and fused into one list.

:meth:`HybridRetriever.search` is the one retrieval path of the engine, of ``bench`` and of the
evaluations: every source's :class:`~shopsearch.retrieval.base.Hits` (with its timing), the fused
candidates, the facets of the first source that counts them, and the query's vector in each
source's vector space, so that later stages reuse the vectors instead of encoding the query
again. What a source can do is what it declares (:data:`~shopsearch.retrieval.base.Capability`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from shopsearch.catalog.candidates import Candidates, Facets, Filters, ProductKey, merge_facets
from shopsearch.errors import InvalidInputError
from shopsearch.progress import Progress
from shopsearch.retrieval.base import (
    Capability,
    Hits,
    QueryPlan,
    Retriever,
    ServingOptions,
    check_k,
)
from shopsearch.retrieval.fusion import WeightedScoreFusion, reciprocal_rank_fusion
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.atomic import write_json

FusionMethod = Literal["rrf", "weighted"]


@dataclass
class FusedHits(Hits):
    """The fused candidates of one query, and what each source answered.

    Attributes:
        sources: each source's own hits (at the per-source depth).
        timings_ms: milliseconds per source and for the fusion (``fusion``).
        query_vectors: the query's vector per vector space (see
            :attr:`~shopsearch.retrieval.base.Retriever.vector_space`).
    """

    sources: dict[str, Hits] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    query_vectors: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)


@RETRIEVERS.register()
class HybridRetriever(Retriever):
    """Fuses the candidates of several retrievers (lexical, dense, learned, graph ...).

    Args:
        sources: source name → retriever.
        fusion: ``"rrf"`` (reciprocal-rank fusion) or ``"weighted"`` (normalised weighted score
            fusion, fitted on judgments with :meth:`fit_fusion`).
        per_source_k: how many candidates each source contributes before fusion (at least the
            requested ``k``).
        rrf_constant: the ``c`` in ``1 / (c + rank)``.
    """

    name = "hybrid"
    config_keys: ClassVar[list[str]] = ["fusion", "per_source_k", "rrf_constant"]

    def __init__(
        self,
        sources: Mapping[str, Retriever],
        fusion: FusionMethod = "rrf",
        per_source_k: int = 200,
        rrf_constant: float = 60.0,
    ) -> None:
        if not sources:
            raise InvalidInputError("a hybrid retriever needs at least one source")
        if fusion not in ("rrf", "weighted"):
            raise InvalidInputError(f"fusion={fusion!r} is not one of 'rrf', 'weighted'")
        check_k(per_source_k)
        self.sources = dict(sources)
        self.fusion = fusion
        self.per_source_k = per_source_k
        self.rrf_constant = rrf_constant
        self.weighting_ = WeightedScoreFusion(list(self.sources))

    @property
    def capabilities(self) -> frozenset[Capability]:  # type: ignore[override]
        """``facets`` (``history``) when a source counts them (reads it), ``updates`` when every
        source updates."""
        caps: set[Capability] = set()
        for shared in ("facets", "history"):
            if any(shared in s.capabilities for s in self.sources.values()):
                caps.add(shared)
        if all("updates" in s.capabilities for s in self.sources.values()):
            caps.add("updates")
        return frozenset(caps)

    def index(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Index the products in every source."""
        for retriever in self.sources.values():
            retriever.index(products, progress)
        return self

    # -- searching -----------------------------------------------------------------------------
    def search(
        self,
        query: str,
        k: int = 100,
        filters: Filters | None = None,
        plan: QueryPlan | None = None,
    ) -> FusedHits:
        """Every source's hits for ``query`` (``max(k, per_source_k)`` each), fused to ``k``
        and restricted to the matched set.

        The **matched set** is what a product must be in to be a result at all: the lexical
        source's whole matching set (its products with the query's words, counted in full,
        with facets) and each vector source's candidates closer than its match threshold to
        the query (:meth:`~shopsearch.retrieval.base.Retriever.matches`). ``total`` counts the
        matched set and the facets count it, so both are the same for every page; a product a
        vector source found only loosely is dropped. Without a source that counts facets,
        ``total`` is the number of matched candidates and there are no facets.
        ``candidates.sources`` keeps each source's score of every fused candidate. An
        unindexed source raises :class:`~shopsearch.errors.NotFittedError`.
        """
        check_k(k)
        depth = max(k, self.per_source_k)
        hits: dict[str, Hits] = {}
        timings: dict[str, float] = {}
        for name, source in self.sources.items():
            start = time.perf_counter()
            hits[name] = source.search(query, depth, filters, plan)
            timings[name] = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()
        fused = self.fuse({name: h.candidates for name, h in hits.items()}, depth)
        matched, total, facets = self._matched(query, filters, hits, plan)
        keep = np.fromiter((key in matched for key in fused.keys), bool, len(fused))
        fused = _subset(fused, np.flatnonzero(keep)[:k], total)
        timings["fusion"] = 1000 * (time.perf_counter() - start)
        vectors = {
            space: h.query_vector
            for name, h in hits.items()
            if h.query_vector is not None and (space := self.sources[name].vector_space) is not None
        }
        return FusedHits(fused, facets, None, hits, timings, vectors)

    def _matched(
        self,
        query: str,
        filters: Filters | None,
        hits: Mapping[str, Hits],
        plan: QueryPlan | None,
    ) -> tuple[set[ProductKey], int, Facets | None]:
        """The matched keys among the candidates, the matched set's size and its facets."""
        counted = next((n for n, s in self.sources.items() if "facets" in s.capabilities), None)
        loose: list[ProductKey] = []  # candidates of other sources below their threshold
        close: list[ProductKey] = []  # and at least at it
        for name, found in hits.items():
            if name == counted:
                continue
            mask = self.sources[name].matches(found.candidates)
            for key, ok in zip(found.candidates.keys, mask.tolist(), strict=True):
                (close if ok else loose).append(key)
        if counted is None:
            matched = set(close)
            return matched, len(matched), None
        base = hits[counted]
        lexical = set(base.candidates.keys)
        others = list(dict.fromkeys(k for k in [*close, *loose] if k not in lexical))
        complete = base.candidates.total is not None and base.candidates.total <= len(lexical)
        # A lexical list that holds its whole matching set leaves no other candidate in it.
        in_set = (
            set() if complete else self.sources[counted].matching_keys(query, filters, others, plan)
        )
        extra = list(dict.fromkeys(k for k in close if k not in lexical and k not in in_set))
        total = (base.candidates.total or len(lexical)) + len(extra)
        facets = base.facets or {}
        if extra:
            facets = merge_facets(facets, self.sources[counted].facets_of(extra))
        return lexical | in_set | set(extra), total, facets

    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """The top ``k`` fused candidates (:meth:`search` without the rest)."""
        return self.search(query, k, filters).candidates

    def source_candidates(
        self, query: str, k: int, filters: Filters | None = None
    ) -> dict[str, Candidates]:
        """Each source's own candidates for ``query`` (``max(k, per_source_k)`` from each)."""
        depth = max(k, self.per_source_k)
        return {name: r.retrieve(query, depth, filters) for name, r in self.sources.items()}

    def fuse(self, lists: Mapping[str, Candidates], k: int) -> Candidates:
        """Fuse candidate lists with this retriever's fusion method."""
        if self.fusion == "rrf":
            return reciprocal_rank_fusion(lists, k, self.rrf_constant)
        return self.weighting_.fuse(lists, k)

    def vector_source(self, space: str) -> Retriever | None:
        """The source whose vectors are in ``space`` (``None`` when no source's are)."""
        return next((s for s in self.sources.values() if s.vector_space == space and space), None)

    # -- serving and updates -------------------------------------------------------------------
    def configure(self, options: ServingOptions | Callable[[str], ServingOptions]) -> None:
        """Apply serving options to every source; a function gives each source (by name) its
        own (e.g. observers labelled with the source's name)."""
        for name, source in self.sources.items():
            source.configure(options(name) if callable(options) else options)

    def upsert(self, products: pa.Table) -> Self:
        """Add or replace products in every source, without a rebuild.

        Raises:
            InvalidInputError: a source cannot update in place (nothing is changed).
        """
        self._check_updates()
        for source in self.sources.values():
            source.upsert(products)
        return self

    def delete(self, keys: Iterable[ProductKey]) -> int:
        """Remove products from every source; returns the most any source held."""
        self._check_updates()
        unique = list(dict.fromkeys(keys))
        return max((source.delete(unique) for source in self.sources.values()), default=0)

    def _check_updates(self) -> None:
        fixed = [n for n, s in self.sources.items() if "updates" not in s.capabilities]
        if fixed:
            raise InvalidInputError(
                f"source(s) {', '.join(fixed)} cannot change products in place; rebuild the "
                "bundle with 'shopsearch index' instead"
            )

    # -- fitting and saving --------------------------------------------------------------------
    def fit_fusion(
        self, queries: Sequence[str], judgments: Sequence[Mapping[ProductKey, float]]
    ) -> Self:
        """Fit weighted fusion on training queries and their graded judgments; sets ``weighted``.

        Args:
            queries: training query texts.
            judgments: per query, product key → grade.
        """
        lists = [self.source_candidates(q, self.per_source_k) for q in queries]
        self.weighting_.fit(lists, judgments)
        self.fusion = "weighted"
        return self

    def save(self, path: Path) -> None:
        """Save each source in its own sub-folder plus ``config.json``."""
        path.mkdir(parents=True, exist_ok=True)
        for name, retriever in self.sources.items():
            retriever.save(path / name)
        write_json(
            path / "config.json",
            {
                **self.get_config(),
                "sources": {name: RETRIEVERS.name_of(r) for name, r in self.sources.items()},
                "weights": self.weighting_.weights_,
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Load a hybrid retriever saved by :meth:`save`."""
        config = orjson.loads((path / "config.json").read_bytes())
        sources = {
            name: RETRIEVERS.get(kind).load(path / name) for name, kind in config["sources"].items()
        }
        hybrid = cls(sources, config["fusion"], config["per_source_k"], config["rrf_constant"])
        hybrid.weighting_.weights_ = {k: float(v) for k, v in config["weights"].items()}
        return hybrid


def _subset(found: Candidates, rows: npt.NDArray[np.intp], total: int) -> Candidates:
    """The candidates at ``rows`` (in that order), with ``total``."""
    return Candidates(
        keys=[found.keys[i] for i in rows.tolist()],
        scores=found.scores[rows],
        total=total,
        sources={name: values[rows] for name, values in found.sources.items()},
    )
