"""In-memory product lookup by key, for rendering search results."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa

from shopsearch.catalog.candidates import ProductKey

_SHOWN = ("domain", "product_id", "title", "brand", "category", "price", "in_stock")


class ProductLookup:
    """Products by ``(domain, product_id)``; updated in place on catalog writes."""

    def __init__(self, products: pa.Table) -> None:
        self._rows: dict[ProductKey, dict[str, Any]] = {}
        self._domains: frozenset[str] | None = None
        self.upsert(products)

    def upsert(self, products: pa.Table) -> None:
        """Add or replace products."""
        for row in products.select(list(_SHOWN)).to_pylist():
            self._rows[(row["domain"], row["product_id"])] = row
        self._domains = None

    def delete(self, keys: Iterable[ProductKey]) -> None:
        """Forget products (missing keys are ignored)."""
        for key in keys:
            self._rows.pop(key, None)
        self._domains = None

    def get(self, key: ProductKey) -> dict[str, Any] | None:
        """The shown fields of one product, or ``None``."""
        return self._rows.get(key)

    def many(self, keys: Sequence[ProductKey]) -> list[dict[str, Any] | None]:
        """:meth:`get` for each key."""
        return [self._rows.get(key) for key in keys]

    def items(self) -> Iterator[tuple[ProductKey, dict[str, Any]]]:
        """Every product's key and shown fields."""
        return iter(list(self._rows.items()))

    def domains(self) -> frozenset[str]:
        """Domains that have at least one product (computed once per catalog change)."""
        domains = self._domains
        if domains is None:
            domains = self._domains = frozenset(key[0] for key in self._rows)
        return domains

    def __len__(self) -> int:
        return len(self._rows)
