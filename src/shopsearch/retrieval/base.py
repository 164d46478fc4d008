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
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shopsearch.errors import InvalidInputError

#: ``(domain, product_id)``: the identity of a product across the system.
ProductKey = tuple[str, str]


@dataclass(frozen=True)
class Filters:
    """Restrictions on which products may be returned; ``None`` means no restriction.

    ``category`` is a path prefix: ``("Furniture",)`` admits ``Furniture > Sofas``.
    Price bounds are inclusive. Products with no price never pass a price bound.
    """

    domain: str | None = None
    category: tuple[str, ...] | None = None
    brand: str | None = None
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None

    def __post_init__(self) -> None:
        for name in ("price_min", "price_max"):
            value = getattr(self, name)
            if value is not None and (not np.isfinite(value) or value < 0):
                raise InvalidInputError(f"{name}={value} is not allowed; use a price >= 0")
        if (
            self.price_min is not None
            and self.price_max is not None
            and self.price_min > self.price_max
        ):
            raise InvalidInputError(
                f"price_min={self.price_min} is above price_max={self.price_max}; "
                "use price_min <= price_max"
            )

    def is_empty(self) -> bool:
        """True when nothing is restricted."""
        return all(getattr(self, f) is None for f in self.__dataclass_fields__)


@dataclass
class Candidates:
    """Products retrieved for one query, best first.

    Attributes:
        keys: product keys, best first.
        scores: the retriever's score for each key (higher is better).
        total: how many products matched in all (before the cut to ``k``), when known.
        sources: per-source scores kept by fusion, for explanation (source name → scores,
            ``nan`` where that source did not return the product).
    """

    keys: list[ProductKey]
    scores: npt.NDArray[np.float32]
    total: int | None = None
    sources: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def empty(cls) -> Candidates:
        """No candidates."""
        return cls(keys=[], scores=np.zeros(0, dtype=np.float32), total=0)


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
