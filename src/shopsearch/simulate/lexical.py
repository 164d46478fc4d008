"""The default logging policy: BM25 over each market's titles, randomised per request.

For each distinct (domain, query) the top ``candidates`` products by BM25 (title tokens, lower-
cased alphanumeric runs; ``k1``, ``b`` of :class:`~shopsearch.simulate.config.PolicyParams`) are
computed once with a sparse matrix product and cached. At ranking time each request draws a
Plackett-Luce sample of its candidates (Gumbel-top-k over ``score / best score / temperature``),
so the same product lands at different positions for the same query: enough randomisation to
estimate position bias from the logs. When fewer than ``k`` products match any query word (typos,
unseen regional words), the list is completed with random products of the domain. Impressions log
``{"bm25": score}`` (0 for the random completion).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from shopsearch.simulate.common import F32, I64, Bool
from shopsearch.simulate.config import PolicyParams
from shopsearch.simulate.policy import CatalogPolicy, RankMatrix, RequestBatch, random_distinct

TOKEN = re.compile(r"[a-z0-9]+")

#: Dense score cells computed at once when cutting a block of queries to their top candidates.
_BLOCK_CELLS = 4_000_000


def tokenize(text: str) -> list[str]:
    """Lower-cased alphanumeric runs."""
    return TOKEN.findall(text.lower())


class LexicalNoisePolicy(CatalogPolicy):
    """BM25 with per-request Plackett-Luce noise (see the module docstring).

    Args:
        products: the ``products`` table (``domain``, ``product_id``, ``title`` are used).
        params: BM25 and noise parameters.
        seed: seed of the per-request noise.
    """

    name = "lexical"

    def __init__(
        self, products: pa.Table, params: PolicyParams | None = None, seed: int = 0
    ) -> None:
        super().__init__(products, seed)
        self.params = params or PolicyParams()
        titles = products.column("title").to_pylist()
        self.vocabulary_: dict[str, int] = {}
        docs = [
            [self.vocabulary_.setdefault(t, len(self.vocabulary_)) for t in tokenize(title)]
            for title in titles
        ]
        self.weights_ = [self._bm25(docs, rows) for rows in self.domain_rows_]
        self._cache: dict[tuple[int, str], int] = {}
        width = self.params.candidates
        self._cand: I64 = np.zeros((0, width), dtype=np.int64)
        self._score: F32 = np.zeros((0, width), dtype=np.float32)

    def _bm25(self, docs: list[list[int]], rows: I64) -> sp.csr_matrix:
        """``(V, n_d)`` BM25 weight of each term in each of the domain's titles."""
        k1, b = self.params.k1, self.params.b
        lengths = np.array([len(docs[r]) for r in rows.tolist()], dtype=np.float64)
        cols = np.concatenate(
            [np.asarray(docs[r], dtype=np.int64) for r in rows.tolist()] or [np.zeros(0, np.int64)]
        )
        doc = np.repeat(np.arange(rows.size), lengths.astype(np.int64))
        tf = sp.csr_matrix(
            (np.ones(cols.size), (doc, cols)), shape=(rows.size, len(self.vocabulary_))
        )
        tf.sum_duplicates()
        df = np.bincount(tf.indices, minlength=len(self.vocabulary_))
        idf = np.log1p((rows.size - df + 0.5) / (df + 0.5))
        norm = k1 * (1.0 - b + b * lengths / max(lengths.mean(), 1e-9))
        row_of = np.repeat(np.arange(rows.size), np.diff(tf.indptr))
        tf.data = idf[tf.indices] * tf.data * (k1 + 1.0) / (tf.data + norm[row_of])
        return tf.T.tocsr().astype(np.float32)

    def rank_matrix(self, batch: RequestBatch, k: int, products: pd.Index) -> RankMatrix:
        """BM25 candidates (cached), Gumbel-top-k noise, random completion."""
        rng = self.batch_rng(batch)
        codes = self.domain_codes(batch)
        cache_rows = self._lookup(codes, batch.queries)
        cand = self._cand[cache_rows]
        score = self._score[cache_rows]
        valid = cand >= 0
        self._record(batch, cand, score, valid)
        best = np.where(valid, score, 0.0).max(axis=1, keepdims=True)
        temperature = max(self.params.temperature, 1e-6)
        keys = np.where(
            valid,
            score / np.maximum(best, 1e-9) / temperature + rng.gumbel(size=score.shape),
            -np.inf,
        )
        width = min(k, cand.shape[1])
        top = np.argpartition(-keys, width - 1, axis=1)[:, :width]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(keys, top, 1), 1), 1)
        rows = np.take_along_axis(cand, top, 1)
        bm25 = np.where(rows >= 0, np.take_along_axis(score, top, 1), 0.0)
        if width < k:
            rows = np.pad(rows, ((0, 0), (0, k - width)), constant_values=-1)
            bm25 = np.pad(bm25, ((0, 0), (0, k - width)))
        rows = self._complete(rows, codes, k, rng)
        items = np.where(rows >= 0, self.global_rows(products)[np.maximum(rows, 0)], -1)
        return RankMatrix(items.astype(np.int32), {"bm25": bm25.astype(np.float32)})

    def _record(self, batch: RequestBatch, cand: I64, score: F32, valid: Bool) -> None:
        """Record the BM25 candidates (stage ``retrieve``) of the sampled requests."""
        ids = self.product_ids_
        for i, request_id in enumerate(batch.request_ids):
            if self.sampled(request_id):
                order = np.argsort(-np.where(valid[i], score[i], -np.inf), kind="stable")
                order = order[valid[i][order]]
                self.record_stream(
                    request_id,
                    batch.domains[i],
                    "retrieve",
                    [ids[r] for r in cand[i][order].tolist()],
                    score[i][order].astype(np.float64).tolist(),
                )

    def _complete(self, rows: I64, codes: I64, k: int, rng: np.random.Generator) -> I64:
        """Fill empty positions with random products of the domain not already listed."""
        short = np.flatnonzero(rows[:, -1] < 0)
        for d, pool in enumerate(self.domain_rows_):
            sel = short[codes[short] == d]
            if sel.size == 0:
                continue
            fill = random_distinct(rng, pool, sel.size, 2 * k)
            listed = rows[sel]
            fill = np.where((fill[:, :, None] == listed[:, None, :]).any(axis=2), -1, fill)
            merged = np.concatenate([listed, fill], axis=1)
            order = np.argsort(merged < 0, axis=1, kind="stable")[:, :k]
            rows[sel] = np.take_along_axis(merged, order, 1)
        return rows

    def _lookup(self, codes: I64, queries: list[str]) -> I64:
        """Cache row of each (domain, query), computing the missing ones."""
        keys = list(zip(codes.tolist(), queries, strict=True))
        if len(self._cache) + len(set(keys)) > self.params.cache_size:
            self._cache.clear()
            self._cand = self._cand[:0]
            self._score = self._score[:0]
        missing = list(dict.fromkeys(key for key in keys if key not in self._cache))
        if missing:
            self._add(missing)
        return np.array([self._cache[key] for key in keys], dtype=np.int64)

    def _add(self, keys: list[tuple[int, str]]) -> None:
        width = self.params.candidates
        cand = np.full((len(keys), width), -1, dtype=np.int64)
        score = np.zeros((len(keys), width), dtype=np.float32)
        codes = np.array([d for d, _ in keys], dtype=np.int64)
        for d, weights in enumerate(self.weights_):
            sel = np.flatnonzero(codes == d)
            if sel.size == 0:
                continue
            query_matrix = self._queries([keys[i][1] for i in sel.tolist()])
            scores = (query_matrix @ weights).tocsr()
            n_docs = weights.shape[1]
            take = min(width, n_docs)
            block = max(1, _BLOCK_CELLS // max(n_docs, 1))
            for start in range(0, sel.size, block):
                dense = scores[start : start + block].toarray()
                top = np.argpartition(-dense, take - 1, axis=1)[:, :take]
                values = np.take_along_axis(dense, top, 1)
                order = np.argsort(-values, axis=1, kind="stable")
                top = np.take_along_axis(top, order, 1)
                values = np.take_along_axis(values, order, 1)
                found = np.where(values > 0, self.domain_rows_[d][top], -1)
                cand[sel[start : start + block], :take] = found
                score[sel[start : start + block], :take] = np.where(values > 0, values, 0.0)
        first = self._cand.shape[0]
        self._cand = np.concatenate([self._cand, cand])
        self._score = np.concatenate([self._score, score])
        for i, key in enumerate(keys):
            self._cache[key] = first + i

    def _queries(self, queries: list[str]) -> sp.csr_matrix:
        ids = [[self.vocabulary_[t] for t in tokenize(q) if t in self.vocabulary_] for q in queries]
        lengths = np.array([len(i) for i in ids], dtype=np.int64)
        cols = np.array([t for row in ids for t in row], dtype=np.int64)
        rows = np.repeat(np.arange(len(queries)), lengths)
        matrix = sp.csr_matrix(
            (np.ones(cols.size), (rows, cols)), shape=(len(queries), len(self.vocabulary_))
        )
        matrix.sum_duplicates()
        return matrix.astype(np.float32)
