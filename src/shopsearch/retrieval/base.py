"""The retrieval stage's contract: a :class:`Retriever` indexes products and returns
:class:`Candidates` for a query under :class:`Filters`.

Products are passed as Arrow tables with the workspace ``products`` schema
(:mod:`shopsearch.store.schema`); a product is identified by its key ``(domain, product_id)``.
Fitted state follows scikit-learn's contract: attributes set by :meth:`Retriever.index` end in
``_`` and using an unindexed retriever raises :class:`~shopsearch.errors.NotFittedError`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Self

import pyarrow as pa

from shopsearch.catalog.candidates import Candidates, Filters
from shopsearch.errors import InvalidInputError


class Retriever(ABC):
    """One candidate source. Subclasses register a ``name`` and list their ``config_keys``."""

    name: ClassVar[str]
    #: Constructor parameters saved in the bundle's ``config.json``.
    config_keys: ClassVar[list[str]] = []

    @abstractmethod
    def index(self, products: pa.Table) -> Self:
        """Index products (replacing any previous index); returns ``self``."""

    @abstractmethod
    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """The top ``k`` products for ``query`` that pass ``filters``."""

    def retrieve_many(
        self, queries: Sequence[str], k: int = 100, filters: Filters | None = None
    ) -> list[Candidates]:
        """:meth:`retrieve` for each query (subclasses may batch)."""
        return [self.retrieve(q, k, filters) for q in queries]

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
