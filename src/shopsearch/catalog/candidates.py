"""What a search stage passes on: product keys, the filters a request sets, and ranked
:class:`Candidates` (keys, scores, and each source's score for explanation).

A product is identified by its key ``(domain, product_id)`` everywhere in the system.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shopsearch.errors import InvalidInputError

#: ``(domain, product_id)``: the identity of a product across the system.
ProductKey = tuple[str, str]


def product_key(domain: str, product_id: str) -> ProductKey:
    """The key of a product, with its strings interned (:func:`sys.intern`).

    Every index keeps a map from keys, and a search looks each candidate up in several of
    them; keys read from different files are equal strings at different addresses, so each
    lookup compares the strings byte by byte, at scattered addresses. Interned, equal keys share
    their strings, and a lookup of a key already touched by the request finds them in the CPU
    cache (on 50k products: 0.07-0.10 ms instead of 0.19 ms for 200 lookups).
    """
    return (sys.intern(domain), sys.intern(product_id))


def product_keys(domains: Iterable[str], product_ids: Iterable[str]) -> list[ProductKey]:
    """:func:`product_key` of each ``(domain, product_id)`` pair (same lengths)."""
    return [product_key(d, p) for d, p in zip(domains, product_ids, strict=True)]


#: Facet counts: facet name (``category``, ``brand``, ``price``) → value → products.
Facets = dict[str, dict[str, int]]


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


def merge_facets(first: Facets, second: Facets, size: int | None = None) -> Facets:
    """Facet counts of two disjoint sets of products added up.

    ``category`` and ``brand`` values are listed most frequent first (``size`` at most);
    ``price`` buckets keep their order.
    """
    merged: Facets = {}
    for name in dict.fromkeys([*first, *second]):
        counts = dict(first.get(name, {}))
        for value, n in second.get(name, {}).items():
            counts[value] = counts.get(value, 0) + n
        if name != "price":
            counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size])
        merged[name] = counts
    return merged
