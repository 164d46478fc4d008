"""What every diversity re-ranker shares: the candidates' facets, their similarity, the
re-ranker contract and its registry.

**Facets** of a product are what a shop's catalog says about it: its category path, its brand
and its attributes (``{"color": "Gray", "material": "Rubber"}``). The similarity of two
candidates is one ``(n, n)`` matrix per facet (:data:`FACETS`): ``category`` and ``brand`` are
1 when the two have the same value; ``attributes`` is the number of attribute keys on which
both have the same value over the most attributes any candidate of the list has. Each is a sum
of indicator Gram matrices, so every facet matrix (and any non-negative blend of them) is
positive semi-definite, as a DPP kernel needs; the diagonal is at most 1. The baselines use the
equal blend (:func:`blend`); PODM-MI learns a blend per user.

A re-ranker (:class:`DiversityReranker`) takes the first ``depth`` candidates of the ranked list
with their ranking scores and facet similarity and answers a new order of them
(:class:`Reranked`), greedily, with the utility each had when it was placed.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.registry import Registry, subclass_of

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

#: The facets of a product the similarity is made of, in the order of the facet axis.
FACETS: tuple[str, ...] = ("category", "brand", "attributes")

#: File of a saved re-ranker's name and parameters.
CONFIG_FILE = "config.json"


def attributes_of(value: object) -> dict[str, str]:
    """A product's attributes as a dict (the table stores a JSON object string)."""
    if isinstance(value, Mapping):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except ValueError:
            return {}
        if isinstance(parsed, dict):
            return {str(k): str(v) for k, v in parsed.items()}
    return {}


def _codes(values: Sequence[object]) -> I64:
    """Integer code per value (equal values, equal codes; ``None`` → -1)."""
    table: dict[object, int] = {}
    out = np.full(len(values), -1, dtype=np.int64)
    for i, value in enumerate(values):
        if value is not None and value != "":
            out[i] = table.setdefault(value, len(table))
    return out


@dataclass(frozen=True)
class FacetCodes:
    """Products' facets as integer codes (equal value, equal code; -1: none).

    Attributes:
        category: ``(n,)`` code of the category path.
        brand: ``(n,)`` code of the brand.
        attributes: ``(n, K)`` code of each attribute key's value (one column per key).
    """

    category: I64
    brand: I64
    attributes: I64

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any] | None]) -> FacetCodes:
        """Codes of products' rows of the products table (``None``: an unknown product)."""
        category = _codes(
            [None if r is None else tuple(r.get("category") or ()) or None for r in rows]
        )
        brand = _codes([None if r is None else (r.get("brand") or None) for r in rows])
        attrs = [{} if r is None else attributes_of(r.get("attributes")) for r in rows]
        keys = sorted({k for a in attrs for k in a})
        columns = [_codes([a.get(key) for a in attrs]) for key in keys]
        attributes = np.stack(columns, axis=1) if columns else np.full((len(rows), 0), -1, np.int64)
        return cls(category, brand, attributes)


#: Columns of the products table the facets are read from.
FACET_COLUMNS = ("domain", "product_id", "category", "brand", "attributes")


class ProductFacets:
    """Every product's facets by ``(domain, product_id)``, read from the products table.

    Args:
        products: the products table (at least :data:`FACET_COLUMNS`).
    """

    def __init__(self, products: pa.Table) -> None:
        self._rows: dict[tuple[str, str], dict[str, Any]] = {}
        names = [c for c in FACET_COLUMNS if c in products.column_names]
        for row in products.select(names).to_pylist():
            self._rows[(row["domain"], row["product_id"])] = row

    def rows(
        self,
        keys: Sequence[tuple[str, str]],
        fallback: Callable[[tuple[str, str]], Mapping[str, Any] | None] | None = None,
    ) -> list[Mapping[str, Any] | None]:
        """The facet rows of ``keys`` (``fallback`` for products added since, e.g. the
        engine's lookup, which knows their category and brand)."""
        out: list[Mapping[str, Any] | None] = []
        for key in keys:
            row = self._rows.get(key)
            out.append(row if row is not None or fallback is None else fallback(key))
        return out

    def __len__(self) -> int:
        return len(self._rows)


def _same(codes: I64) -> F64:
    """``(..., n, n)``: 1 where two known codes of the last axis are equal."""
    a = codes[..., :, None]
    b = codes[..., None, :]
    out: F64 = ((a == b) & (a >= 0) & (b >= 0)).astype(np.float64)
    return out


def similarity_of_codes(category: I64, brand: I64, attributes: I64) -> F64:
    """``(..., len(FACETS), n, n)`` facet similarity of lists given as codes: ``category``
    and ``brand`` ``(..., n)``, ``attributes`` ``(..., n, K)`` (see the module docstring)."""
    attrs = np.moveaxis(attributes, -1, -2)  # (..., K, n)
    same = (
        _same(attrs).sum(axis=-3)
        if attrs.shape[-2]
        else np.zeros(category.shape[:-1] + (category.shape[-1],) * 2)
    )
    most = (attributes >= 0).sum(axis=-1).max(axis=-1, initial=0)
    shared = same / np.maximum(most, 1)[..., None, None]
    return np.stack([_same(category), _same(brand), shared], axis=-3)


def facet_similarity(rows: Sequence[Mapping[str, Any] | None]) -> F64:
    """``(len(FACETS), n, n)`` similarity of products (rows of the products table; ``None``:
    unknown product, similar to nothing)."""
    codes = FacetCodes.from_rows(rows)
    return similarity_of_codes(codes.category, codes.brand, codes.attributes)


def blend(similarity: F64, weights: F64 | None = None) -> F64:
    """One ``(n, n)`` similarity from the facet matrices: their weighted mean (equal weights by
    default)."""
    w = np.full(similarity.shape[0], 1.0 / similarity.shape[0]) if weights is None else weights
    out: F64 = np.tensordot(w, similarity, axes=1)
    return out


def minmax(scores: F64) -> F64:
    """Scores scaled to [0, 1] within the list (all 1 when they are equal; ``nan`` → lowest)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    finite = np.isfinite(s)
    if not finite.any():
        return np.ones(s.size)
    s = np.where(finite, s, s[finite].min())
    span = s.max() - s.min()
    out: F64 = (s - s.min()) / span if span > 0 else np.ones(s.size)
    return out


@dataclass(frozen=True)
class Reranked:
    """A re-ranker's answer for one list.

    Attributes:
        order: indices into the given candidates, best first (a permutation of all of them).
        utility: the utility each candidate of ``order`` had when it was placed (aligned with
            ``order``; the ones past ``depth`` keep their ranking score's order and ``nan``).
    """

    order: I64
    utility: F64


def identity(n: int) -> Reranked:
    """The ranked order unchanged."""
    return Reranked(np.arange(n, dtype=np.int64), np.full(n, np.nan))


def complete(picked: list[int], utility: list[float], n: int) -> Reranked:
    """The greedy picks followed by every other candidate in ranked order."""
    chosen = set(picked)
    rest = [i for i in range(n) if i not in chosen]
    order = np.array(picked + rest, dtype=np.int64)
    values = np.array(utility + [np.nan] * len(rest), dtype=np.float64)
    return Reranked(order, values)


class DiversityReranker(ABC):
    """A diversity re-ranker: ``fit`` (on logged lists; returns ``self``), ``rerank``,
    ``save`` / ``load`` as plain files (a ``config.json`` with the name and the parameters in
    :attr:`config_keys`, plus each model's arrays)."""

    #: The registry name.
    name: ClassVar[str]
    #: Constructor parameters saved in ``config.json``.
    config_keys: ClassVar[tuple[str, ...]] = ()

    def rerank(
        self, scores: F64, similarity: F64, user: str | None = None, depth: int | None = None
    ) -> Reranked:
        """Re-order candidates given in ranked order.

        Args:
            scores: the ranking scores, best first (the ranked order).
            similarity: ``(len(FACETS), n, n)`` facet similarity (:func:`facet_similarity`).
            user: the searching user's id (``None``: anonymous).
            depth: how many to place greedily (default: all); the rest keep their order.

        Raises:
            InvalidInputError: a depth below 1.
        """
        n = len(scores)
        k = check_depth(depth, n)
        if n == 0:
            return Reranked(np.zeros(0, dtype=np.int64), np.zeros(0))
        return self._rerank(scores, similarity, user, k)

    @abstractmethod
    def _rerank(self, scores: F64, similarity: F64, user: str | None, k: int) -> Reranked:
        """:meth:`rerank` of a non-empty list, placing the first ``k`` (``1 <= k <= n``)."""

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` (and a model's arrays) to ``folder``."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        params = {key: getattr(self, key) for key in self.config_keys}
        (path / CONFIG_FILE).write_bytes(orjson.dumps({"name": self.name, "params": params}))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read a re-ranker written by :meth:`save`."""
        params = read_config(Path(folder))["params"]
        return cls(**params)


def read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a saved re-ranker.

    Raises:
        WorkspaceError: the folder holds no re-ranker.
    """
    path = folder / CONFIG_FILE
    if not path.exists():
        raise WorkspaceError(f"{folder} holds no re-ranker ({CONFIG_FILE} missing)")
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def check_depth(depth: int | None, n: int) -> int:
    """How many candidates to place greedily.

    Raises:
        InvalidInputError: for a depth below 1.
    """
    if depth is None:
        return n
    if depth < 1:
        raise InvalidInputError(f"depth={depth} is not allowed; use depth >= 1")
    return min(depth, n)


#: Re-ranker name → class.
RERANKERS: Registry[type[DiversityReranker]] = Registry(
    "diversity re-rankers",
    modules=(
        "shopsearch.rerank.diversity.mmr",
        "shopsearch.rerank.diversity.dpp",
        "shopsearch.rerank.diversity.podm_mi",
    ),
    check=subclass_of(DiversityReranker),
)


def load_reranker(folder: str | Path) -> DiversityReranker:
    """The re-ranker saved in ``folder`` (its class found by the saved name)."""
    name = read_config(Path(folder))["name"]
    return RERANKERS.get(name).load(folder)


__all__ = [
    "CONFIG_FILE",
    "FACETS",
    "FACET_COLUMNS",
    "RERANKERS",
    "DiversityReranker",
    "FacetCodes",
    "ProductFacets",
    "Reranked",
    "blend",
    "check_depth",
    "complete",
    "facet_similarity",
    "identity",
    "load_reranker",
    "minmax",
    "read_config",
    "similarity_of_codes",
]
