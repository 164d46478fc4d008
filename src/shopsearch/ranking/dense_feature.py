"""The ``dense_sim`` ranking feature: cosine of the query and the product in one vector space.

:class:`DenseSimilarity` reads a :class:`VectorSource` — a retrieval source with product vectors
of one encoder, such as :class:`~shopsearch.retrieval.dense.DenseRetriever` — so the feature of
a training sample and of a served candidate are computed the same way, from the same vectors:

* at serving, the query vector is the one retrieval has just computed in that space (handed on
  by the pipeline, so ranking does not encode the query again), and each candidate's vector is
  a row of the source's matrix (looked up by key);
* for training samples, every distinct logged query is encoded once in batches.

The model records the vector space it was trained with (:attr:`DenseSimilarity.space`, e.g.
``minilm@<version>``); serving refuses a source of another space, so a model trained on MiniLM
cosines is never scored with another encoder's cosines. Vectors are L2-normalised, so the inner
product is the cosine. A product the source does not hold (deleted, or added after the index
was built) gets 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from shopsearch.catalog.candidates import ProductKey

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
_CHUNK = 20_000


class VectorSource(Protocol):
    """What :class:`DenseSimilarity` reads of a retrieval source with product vectors."""

    @property
    def vector_space(self) -> str | None:
        """The encoder (name and version) of the vectors."""
        ...

    @property
    def vectors_(self) -> F32:
        """Product vectors, one row per indexed product (L2-normalised)."""
        ...

    def rows_of(self, keys: Sequence[ProductKey]) -> npt.NDArray[np.int64]:
        """Each key's row of :attr:`vectors_` (-1: not held)."""
        ...

    def query_vectors(self, queries: Sequence[str], count: bool = True) -> F32:
        """Vectors of ``queries`` in the same space."""
        ...


class DenseSimilarity:
    """Query–product cosines from a fitted source with product vectors.

    Args:
        source: an indexed (or loaded) vector source.
    """

    def __init__(self, source: VectorSource) -> None:
        self.source = source
        self._preset: tuple[str, F32] | None = None

    def with_query_vector(self, query: str, vector: F32) -> DenseSimilarity:
        """A copy that uses ``vector`` for ``query`` (one request's vector, computed already)."""
        bound = DenseSimilarity(self.source)
        bound._preset = (query, vector)
        return bound

    @property
    def space(self) -> str:
        """The vector space the cosines are computed in."""
        return self.source.vector_space or ""

    def query_vector(self, query: str) -> F32:
        """The query's vector: the one given to :meth:`with_query_vector`, else the source's
        (from its query cache when it has just retrieved)."""
        if self._preset is not None and self._preset[0] == query:
            return self._preset[1]
        vector: F32 = self.source.query_vectors([query], count=False)[0]
        return vector

    def scores(self, query: str, domain: str, product_ids: Sequence[str]) -> F64:
        """Cosine of ``query`` and each product of ``domain`` (0 for unknown products)."""
        rows = self.source.rows_of([(domain, pid) for pid in product_ids])
        known = rows >= 0
        out = np.zeros(len(rows), np.float64)
        if known.any():
            vector = self.query_vector(query).astype(np.float32)
            out[known] = self.source.vectors_[rows[known]] @ vector
        return out

    def scores_many(
        self,
        queries: npt.NDArray[np.object_],
        domains: npt.NDArray[np.object_],
        product_ids: npt.NDArray[np.object_],
        batch_size: int = 256,
    ) -> F64:
        """Cosine per row of (query, domain, product) arrays; each distinct query encoded once."""
        unique, inverse = np.unique(queries.astype(str), return_inverse=True)
        dim = self.source.vectors_.shape[1]
        qvec = np.zeros((len(unique), dim), np.float32)
        for start in range(0, len(unique), batch_size):
            part = [str(q) for q in unique[start : start + batch_size]]
            qvec[start : start + len(part)] = self.source.query_vectors(part, count=False)
        rows = self.source.rows_of(
            [(str(d), str(p)) for d, p in zip(domains, product_ids, strict=True)]
        )
        out = np.zeros(len(rows), np.float64)
        inverse = inverse.ravel()
        for start in range(0, len(rows), _CHUNK):
            r = rows[start : start + _CHUNK]
            q = inverse[start : start + _CHUNK]
            known = r >= 0
            products = self.source.vectors_[r[known]]
            out[start : start + _CHUNK][known] = np.einsum("ij,ij->i", products, qvec[q[known]])
        return out


__all__ = ["DenseSimilarity", "VectorSource"]
