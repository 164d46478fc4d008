"""The retrieval stage's contract: a :class:`Retriever` indexes products and returns
:class:`Candidates` for a query under :class:`Filters`.

Products are passed as Arrow tables with the workspace ``products`` schema
(:mod:`shopsearch.store.schema`); a product is identified by its key ``(domain, product_id)``.
Fitted state follows scikit-learn's contract: attributes set by :meth:`Retriever.index` end in
``_`` and using an unindexed retriever raises :class:`~shopsearch.errors.NotFittedError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shopsearch.catalog.candidates import Candidates, Facets, Filters, ProductKey
from shopsearch.config import RetrievalSettings
from shopsearch.errors import InvalidInputError
from shopsearch.progress import Progress
from shopsearch.text.query_cache import BatchObserver, CacheObserver

#: What a source can do beyond :meth:`Retriever.retrieve`, declared by the class:
#:
#: * ``facets``: its :meth:`~Retriever.search` counts facets over its whole matching set;
#: * ``updates``: :meth:`~Retriever.upsert` and :meth:`~Retriever.delete` change the index in
#:   place, without a rebuild;
#: * ``vectors``: it holds product vectors of one encoder (its :attr:`~Retriever.vector_space`):
#:   ``vectors_`` (one row per product), ``rows_of(keys)`` and ``query_vectors(queries)``, and
#:   :meth:`~Retriever.search` returns the query's vector in that space;
#: * ``history``: it reads the user's history (:attr:`QueryPlan.history`), so the pipeline
#:   looks it up for it.
Capability = Literal["facets", "updates", "vectors", "history"]


@dataclass
class Hits:
    """One source's answer to one query.

    Attributes:
        candidates: the top candidates, best first.
        facets: facet counts over everything the source matched (sources with ``facets``).
        query_vector: the query in the source's vector space (sources with ``vectors``).
    """

    candidates: Candidates
    facets: Facets | None = None
    query_vector: npt.NDArray[np.float32] | None = None


@dataclass(frozen=True)
class QueryPlan:
    """What query understanding adds to the words a source searches for; a source reads what
    it can use (the lexical source all of it, a vector source none of it).

    Attributes:
        rewrites: ``(text, weight)`` alternative queries: a product matching one matches the
            query, its score weighted.
        boosts: category path (``("A", "B")``) → weight: products in it score higher; which
            products match does not change.
        head: words that must match (the product type, in order); the query's other words
            then only raise the score, and a product whose own head phrase is these words (what
            its title says it is) scores higher.
        history: the products the searching user interacted with before this search, most
            recent first (read by sources with the ``history`` capability).
        history_stages: how far each went (click 2, add to cart 2.5, purchase 3).
    """

    rewrites: tuple[tuple[str, float], ...] = ()
    boosts: tuple[tuple[tuple[str, ...], float], ...] = ()
    head: tuple[str, ...] = ()
    history: tuple[ProductKey, ...] = ()
    history_stages: tuple[float, ...] = ()

    def is_empty(self) -> bool:
        """True when the plan adds nothing to the words."""
        return not (self.rewrites or self.boosts or self.head or self.history)


@dataclass(frozen=True)
class ServingOptions:
    """Serving-time settings and observers a source applies to itself; each source takes what
    it has (a query-vector cache and encoding batches, a result cache) and ``None`` leaves a
    setting as it is."""

    query_cache_size: int | None = None
    query_batch: int | None = None
    result_cache_size: int | None = None
    min_similarity: float | None = None
    query_cache_observer: CacheObserver | None = None
    batch_observer: BatchObserver | None = None
    result_cache_observer: CacheObserver | None = None


class Retriever(ABC):
    """One candidate source. Subclasses register a ``name``, list their ``config_keys`` and
    declare their ``capabilities``."""

    name: ClassVar[str]
    #: Constructor parameters saved in the bundle's ``config.json``.
    config_keys: ClassVar[list[str]] = []
    #: What the source can do beyond retrieval (see :data:`Capability`).
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    @classmethod
    def for_index(cls, folder: Path, settings: RetrievalSettings, cache_dir: Path) -> Retriever:
        """An unindexed source as ``shopsearch index`` builds it (``[retrieval] sources``).

        Args:
            folder: the source's folder in the new bundle (a source may build in place).
            settings: the retrieval settings.
            cache_dir: the workspace's embedding cache.

        Raises:
            InvalidInputError: the source is trained, not indexed (the default).
        """
        raise InvalidInputError(
            f"the {cls.name!r} source is not built by 'shopsearch index'; train it with "
            "'shopsearch train --stage retrieval', or list another source in [retrieval] sources"
        )

    @abstractmethod
    def index(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Index products (replacing any previous index); returns ``self``. A source that
        encodes products reports ``progress(done, total)``."""

    @abstractmethod
    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """The top ``k`` products for ``query`` that pass ``filters``."""

    def search(
        self,
        query: str,
        k: int = 100,
        filters: Filters | None = None,
        plan: QueryPlan | None = None,
    ) -> Hits:
        """:meth:`retrieve`, with the facets and query vector of the source's capabilities;
        ``plan`` is what query understanding adds (a source ignores what it cannot use)."""
        return Hits(self.retrieve(query, k, filters))

    def retrieve_many(
        self, queries: Sequence[str], k: int = 100, filters: Filters | None = None
    ) -> list[Candidates]:
        """:meth:`retrieve` for each query (subclasses may batch)."""
        return [self.retrieve(q, k, filters) for q in queries]

    def matches(self, candidates: Candidates) -> npt.NDArray[np.bool_]:
        """Which of this source's candidates match the query, not merely come closest: every
        candidate by default (a lexical candidate contains the query's words); a source with
        ``vectors`` keeps those closer to the query than its match threshold."""
        return np.ones(len(candidates), dtype=bool)

    def fit_matches(self) -> None:
        """Fit what makes a candidate a match (:meth:`matches`) on the indexed products, so
        that a saved index keeps it; nothing to fit by default."""
        return None

    def matching_keys(
        self,
        query: str,
        filters: Filters | None,
        keys: Sequence[ProductKey],
        plan: QueryPlan | None = None,
    ) -> set[ProductKey]:
        """Which of ``keys`` this source's matching set for ``query`` and ``filters`` holds,
        beyond the candidates it returned (sources with ``facets``, whose matching set is
        counted in full)."""
        raise InvalidInputError(f"the {self.name!r} source has no matching set to look keys up in")

    def facets_of(self, keys: Sequence[ProductKey]) -> Facets:
        """Facet counts of exactly ``keys`` (sources with ``facets``)."""
        raise InvalidInputError(f"the {self.name!r} source counts no facets")

    def upsert(self, products: pa.Table) -> Self:
        """Add or replace products in place (sources with the ``updates`` capability)."""
        raise InvalidInputError(
            f"the {self.name!r} source cannot add products without a rebuild; run "
            "'shopsearch index' (and retrain it) instead"
        )

    def delete(self, keys: Iterable[ProductKey]) -> int:
        """Remove products in place; returns how many were indexed (``updates`` capability)."""
        raise InvalidInputError(
            f"the {self.name!r} source cannot remove products without a rebuild; run "
            "'shopsearch index' (and retrain it) instead"
        )

    @property
    def vector_space(self) -> str | None:
        """Which encoder (name and version) made the source's vectors; ``None`` without the
        ``vectors`` capability. Two sources with one vector space have comparable vectors."""
        return None

    def configure(self, options: ServingOptions) -> None:
        """Apply serving-time settings and observers (a source without caches ignores them)."""
        return None

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the index as plain files (json, npy, parquet, native index files) to ``path``."""

    @classmethod
    @abstractmethod
    def load(cls, path: Path) -> Self:
        """Read an index written by :meth:`save`."""

    def get_config(self) -> dict[str, object]:
        """The constructor parameters named in ``config_keys``."""
        return {key: getattr(self, key) for key in self.config_keys}


def check_k(k: int, limit: int | None = None, what: str = "products") -> None:
    """Fail clearly for a ``k`` that is not a positive count (or above ``limit``)."""
    if k < 1:
        raise InvalidInputError(f"k={k} is not allowed; use k >= 1")
    if limit is not None and k > limit:
        raise InvalidInputError(f"k={k} is larger than the {limit} {what}; use k <= {limit}")
