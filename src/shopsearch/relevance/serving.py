"""The relevance model as a bundle serves it: the student, its gate, and product vectors.

A bundle's ``relevance/`` folder holds a :class:`RelevanceModel`: the
:class:`~.student.BERT2DNNStudent` (``student.json``, ``weights.safetensors``) and the
:class:`~.distill.RelevanceGate` (``gate.json``). :class:`ProductScorer` computes the student's
product side once per product of a catalog and scores a query against any of them with one
query vector and a gather of rows; a product it has not seen, or whose text changed since (a
catalog write), gets its vector computed on the spot and kept.

The product text the student reads is :func:`relevance_text` (title, brand, leaf category):
the same function builds the texts the student is trained on and the texts it serves, and it
uses only the fields the engine's product lookup holds.

The gate itself (which candidates a threshold keeps, demotes or drops) is :mod:`.gate`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from shopsearch.catalog.candidates import ProductKey
from shopsearch.relevance.distill import RelevanceGate
from shopsearch.relevance.student import BERT2DNNStudent
from shopsearch.text.product_text import product_text

F32 = npt.NDArray[np.float32]


def relevance_text(title: str, brand: str = "", category: Sequence[str] = ()) -> str:
    """The text of a product as the relevance student reads it: its title, then its brand
    and leaf category when the title does not already name them."""
    return product_text(str(title or ""), str(brand or ""), list(category or ()), "{}", 0)


def row_text(row: dict[str, Any] | None) -> str:
    """:func:`relevance_text` of a product row (``title``, ``brand``, ``category``); ``""``
    for ``None``."""
    if row is None:
        return ""
    return relevance_text(row.get("title", ""), row.get("brand", ""), row.get("category") or ())


@dataclass
class RelevanceModel:
    """The student and its gate, as one bundle folder.

    Attributes:
        student: the distilled student.
        gate: its fitted threshold.
    """

    student: BERT2DNNStudent
    gate: RelevanceGate

    def save(self, folder: Path) -> None:
        """Write the student and ``gate.json`` into ``folder``."""
        self.student.save(folder)
        self.gate.save(folder)

    @classmethod
    def load(cls, folder: Path) -> Self:
        """The model :meth:`save` wrote.

        Raises:
            WorkspaceError: ``folder`` holds no student or no gate.
        """
        return cls(BERT2DNNStudent.load(folder), RelevanceGate.load(folder))


class ProductScorer:
    """The student's scores of a query against products, with product vectors computed once.

    Args:
        student: the fitted student.
        products: ``(key, text)`` of every product to precompute (texts by
            :func:`relevance_text`).
    """

    def __init__(
        self, student: BERT2DNNStudent, products: Iterable[tuple[ProductKey, str]]
    ) -> None:
        self.student = student
        pairs = list(products)
        self._row: dict[ProductKey, int] = {key: i for i, (key, _) in enumerate(pairs)}
        self._texts: list[str] = [text for _, text in pairs]
        self._vectors: F32 = student.product_vectors(self._texts)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._texts)

    def rows(self, keys: Sequence[ProductKey], texts: Sequence[str] | None = None) -> list[int]:
        """Each key's row of the product vectors. With ``texts`` (each key's current text), a
        key not held yet or whose text differs gets a new row computed now."""
        rows = [self._row.get(key, -1) for key in keys]
        if texts is None:
            return rows
        stale = [i for i, (r, t) in enumerate(zip(rows, texts, strict=True))
                 if r < 0 or self._texts[r] != t]  # fmt: skip
        if stale:
            fresh = self.student.product_vectors([texts[i] for i in stale])
            with self._lock:  # concurrent searches: rows only ever get appended
                start = len(self._texts)
                self._vectors = np.concatenate([self._vectors, fresh])
                for n, i in enumerate(stale):
                    self._row[keys[i]] = rows[i] = start + n
                    self._texts.append(texts[i])
        return rows

    def score(
        self, query: str, keys: Sequence[ProductKey], texts: Sequence[str] | None = None
    ) -> F32:
        """The student's probability that each product is relevant to ``query``.

        Args:
            query: the query.
            keys: the products.
            texts: each product's current text (see :meth:`rows`); without it, a product not
                precomputed is scored on an empty text.
        """
        if not len(keys):
            return np.zeros(0, np.float32)
        rows = np.asarray(self.rows(keys, texts), np.int64)
        known = rows >= 0
        vectors = np.zeros((len(rows), self._vectors.shape[1]), np.float32)
        vectors[known] = self._vectors[rows[known]]
        if not known.all():
            vectors[~known] = self.student.product_vectors([""])[0]
        return self.student.score_vectors(query, vectors)

    def score_pairs(
        self,
        queries: Sequence[str],
        keys: Sequence[ProductKey],
        texts: Sequence[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> F32:
        """The score of each (query, product) pair, as :meth:`score` computes it at serving
        (one query vector per distinct query, a gather of the product vectors); ``texts``:
        each pair's product text (see :meth:`rows`); ``progress(done, queries)`` every 1000
        distinct queries."""
        by_query: dict[str, list[int]] = {}
        for i, query in enumerate(queries):
            by_query.setdefault(query, []).append(i)
        out = np.zeros(len(queries), np.float32)
        for n, (query, idx) in enumerate(by_query.items()):
            part = None if texts is None else [texts[i] for i in idx]
            out[idx] = self.score(query, [keys[i] for i in idx], part)
            if progress is not None and (n + 1) % 1000 == 0:
                progress(n + 1, len(by_query))
        return out


__all__ = [
    "ProductScorer",
    "RelevanceModel",
    "relevance_text",
    "row_text",
]
