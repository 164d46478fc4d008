"""Per-row product metadata of a dense index as numpy arrays, and filter masks over them.

Row ``i`` is the product whose vector has id ``i`` in the faiss index. Strings are coded:
domains and brands (lower-cased) as int32 codes, category paths as one int32 id per prefix
(``category[i, d]`` is the id of the row's path cut to ``d + 1`` levels, ``-1`` past its end),
so every filter of :class:`~shopsearch.catalog.candidates.Filters` is one vectorised comparison.
Rows are never reordered; deleted rows are marked dead in ``alive`` until the index compacts.
Filter semantics match the lexical retriever: brands compare lower-cased and a product without a
brand matches no brand filter; a product without a price fails any price bound.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shopsearch.catalog.candidates import Filters, ProductKey, product_keys

Mask = npt.NDArray[np.bool_]
#: Brand code of a product without a brand (no brand filter matches it).
NO_BRAND = -1


def brand_key(brand: str) -> str:
    """How brands compare: lower-cased, as in the lexical index."""
    return brand.lower()


def _codes(values: Sequence[str], vocab: dict[str, int]) -> npt.NDArray[np.int32]:
    return np.fromiter((vocab.setdefault(v, len(vocab)) for v in values), np.int32, len(values))


def _brand_codes(brands: Sequence[str], vocab: dict[str, int]) -> npt.NDArray[np.int32]:
    return np.fromiter(
        (vocab.setdefault(brand_key(b), len(vocab)) if b else NO_BRAND for b in brands),
        np.int32,
        len(brands),
    )


class ProductRows:
    """The metadata of every row (alive or dead) of a dense index."""

    def __init__(self) -> None:
        self.keys: list[ProductKey] = []
        self.row_of: dict[ProductKey, int] = {}
        self.domain_codes: dict[str, int] = {}
        self.brand_codes: dict[str, int] = {}
        self.category_ids: dict[tuple[str, ...], int] = {}
        self.domain = np.empty(0, np.int32)
        self.brand = np.empty(0, np.int32)
        self.category = np.empty((0, 0), np.int32)
        self.price = np.empty(0, np.float64)
        self.in_stock = np.empty(0, np.bool_)
        self.alive = np.empty(0, np.bool_)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def n_alive(self) -> int:
        """Rows not deleted."""
        return len(self.row_of)

    def _category_rows(self, paths: Sequence[Sequence[str]]) -> npt.NDArray[np.int32]:
        depth = max([self.category.shape[1], *(len(p) for p in paths)])
        if depth > self.category.shape[1]:
            pad = np.full((len(self), depth - self.category.shape[1]), -1, np.int32)
            self.category = np.hstack([self.category, pad])
        out = np.full((len(paths), depth), -1, np.int32)
        ids = self.category_ids
        for row, path in enumerate(paths):
            for level in range(len(path)):
                out[row, level] = ids.setdefault(tuple(path[: level + 1]), len(ids))
        return out

    def _columns(self, table: pa.Table) -> dict[str, np.ndarray]:
        cols = table.select(["domain", "brand", "category", "price", "in_stock"]).to_pydict()
        price = table.column("price").to_numpy().astype(np.float64)
        return {
            "domain": _codes(cols["domain"], self.domain_codes),
            "brand": _brand_codes(cols["brand"], self.brand_codes),
            "category": self._category_rows(cols["category"]),
            "price": price,
            "in_stock": np.asarray(cols["in_stock"], dtype=np.bool_),
        }

    def append(self, table: pa.Table) -> None:
        """Add one alive row per product of ``table`` (keys must not be alive already)."""
        start = len(self)
        domains = table.column("domain").to_pylist()
        new_keys = product_keys(domains, table.column("product_id").to_pylist())
        cols = self._columns(table)
        self.keys.extend(new_keys)
        self.row_of.update(zip(new_keys, range(start, start + len(new_keys)), strict=True))
        self.domain = np.concatenate([self.domain, cols["domain"]])
        self.brand = np.concatenate([self.brand, cols["brand"]])
        self.category = np.vstack([self.category, cols["category"]])
        self.price = np.concatenate([self.price, cols["price"]])
        self.in_stock = np.concatenate([self.in_stock, cols["in_stock"]])
        self.alive = np.concatenate([self.alive, np.ones(len(new_keys), np.bool_)])

    def update(self, rows: npt.NDArray[np.int64], table: pa.Table) -> None:
        """Overwrite the metadata of ``rows`` with the products of ``table`` (same keys)."""
        cols = self._columns(table)
        self.domain[rows] = cols["domain"]
        self.brand[rows] = cols["brand"]
        self.category[rows] = cols["category"]
        self.price[rows] = cols["price"]
        self.in_stock[rows] = cols["in_stock"]

    def kill(self, rows: npt.NDArray[np.int64]) -> None:
        """Mark ``rows`` deleted."""
        self.alive[rows] = False
        for row in rows.tolist():
            if self.row_of.get(self.keys[row]) == row:
                del self.row_of[self.keys[row]]

    def compact(self) -> npt.NDArray[np.int64]:
        """Drop dead rows (keeping order); returns the old row numbers that were kept."""
        keep = np.flatnonzero(self.alive)
        self.keys = [self.keys[i] for i in keep.tolist()]
        self.row_of = {key: row for row, key in enumerate(self.keys)}
        for name in ("domain", "brand", "category", "price", "in_stock", "alive"):
            setattr(self, name, getattr(self, name)[keep])
        return keep

    def mask(self, filters: Filters) -> Mask:
        """Alive rows that pass ``filters``."""
        mask = self.alive.copy()
        if filters.domain is not None:
            mask &= self.domain == self.domain_codes.get(filters.domain, -1)
        if filters.brand is not None:
            mask &= self.brand == self.brand_codes.get(brand_key(filters.brand), NO_BRAND - 1)
        if filters.category:
            level = len(filters.category) - 1
            if level >= self.category.shape[1]:
                return np.zeros_like(mask)
            mask &= self.category[:, level] == self.category_ids.get(filters.category, -2)
        # NaN (no price) compares False, so unpriced products fail any price bound.
        if filters.price_min is not None:
            mask &= self.price >= filters.price_min
        if filters.price_max is not None:
            mask &= self.price <= filters.price_max
        if filters.in_stock is not None:
            mask &= self.in_stock == filters.in_stock
        return mask

    def to_table(self) -> pa.Table:
        """Every row's metadata as a table, for saving.

        Columns: ``domain, product_id, brand`` (lower-cased), ``category, price, in_stock,
        alive``.
        """
        domains = list(self.domain_codes)
        brands = list(self.brand_codes)
        paths = list(self.category_ids)
        depth = (self.category >= 0).sum(axis=1)
        leaf = np.zeros(len(self), np.int32)
        if self.category.shape[1]:
            leaf = self.category[np.arange(len(self)), np.maximum(depth - 1, 0)]
        return pa.table(
            {
                "domain": [domains[c] for c in self.domain.tolist()],
                "product_id": [pid for _, pid in self.keys],
                "brand": [brands[c] if c != NO_BRAND else "" for c in self.brand.tolist()],
                "category": [
                    list(paths[i]) if d else []
                    for i, d in zip(leaf.tolist(), depth.tolist(), strict=True)
                ],
                "price": pa.array(self.price, pa.float64(), from_pandas=True),
                "in_stock": self.in_stock,
                "alive": self.alive,
            }
        )

    @classmethod
    def from_table(cls, table: pa.Table) -> ProductRows:
        """Rebuild from :meth:`to_table` output."""
        rows = cls()
        rows.append(table)
        rows.alive = table.column("alive").to_numpy(zero_copy_only=False).astype(np.bool_)
        rows.row_of = {rows.keys[i]: i for i in np.flatnonzero(rows.alive).tolist()}
        return rows
