"""The ``dense_sim`` ranking feature: cosine of the query and the product under the dense encoder.

:class:`DenseSimilarity` reads the workspace's :class:`~shopsearch.retrieval.dense.DenseRetriever`
(the same encoder and the same product vectors that dense retrieval searches), so the feature of
a training sample and of a served candidate are computed the same way:

* at serving, the query vector comes from the retriever's query cache — the retriever has just
  encoded the query to retrieve the candidates, so ranking does not encode it again — and each
  candidate's vector is a row of the retriever's matrix (looked up by key);
* for training samples, every distinct logged query is encoded once in batches.

Vectors are L2-normalised, so the inner product is the cosine. A product the retriever does not
hold (deleted, or added after the index was built) gets 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from shopsearch.retrieval.dense import DenseRetriever

F64 = npt.NDArray[np.float64]
_CHUNK = 20_000


class DenseSimilarity:
    """Query–product cosines from a fitted dense retriever.

    Args:
        retriever: an indexed (or loaded) dense retriever.
    """

    def __init__(self, retriever: DenseRetriever) -> None:
        self.retriever = retriever

    def _rows(self, domain: str, product_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        row_of = self.retriever.rows_.row_of
        return np.fromiter(
            (row_of.get((domain, pid), -1) for pid in product_ids), np.int64, len(product_ids)
        )

    def query_vector(self, query: str) -> npt.NDArray[np.float32]:
        """The query's vector, from the retriever's query cache when it has just retrieved."""
        vector: npt.NDArray[np.float32] = self.retriever.query_vectors([query], count=False)[0]
        return vector

    def scores(self, query: str, domain: str, product_ids: Sequence[str]) -> F64:
        """Cosine of ``query`` and each product of ``domain`` (0 for unknown products)."""
        rows = self._rows(domain, product_ids)
        known = rows >= 0
        out = np.zeros(len(rows), np.float64)
        if known.any():
            vectors = self.retriever.vectors_[rows[known]]
            out[known] = vectors @ self.query_vector(query).astype(np.float32)
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
        encoder = self.retriever.encoder
        dim = self.retriever.vectors_.shape[1]
        qvec = np.zeros((len(unique), dim), np.float32)
        for start in range(0, len(unique), batch_size):
            part = [str(q) for q in unique[start : start + batch_size]]
            qvec[start : start + len(part)] = encoder.encode_queries(part)
        row_of = self.retriever.rows_.row_of
        rows = np.fromiter(
            (row_of.get((str(d), str(p)), -1) for d, p in zip(domains, product_ids, strict=True)),
            np.int64,
            len(product_ids),
        )
        out = np.zeros(len(rows), np.float64)
        inverse = inverse.ravel()
        for start in range(0, len(rows), _CHUNK):
            r = rows[start : start + _CHUNK]
            q = inverse[start : start + _CHUNK]
            known = r >= 0
            products = self.retriever.vectors_[r[known]]
            out[start : start + _CHUNK][known] = np.einsum("ij,ij->i", products, qvec[q[known]])
        return out


__all__ = ["DenseSimilarity"]
