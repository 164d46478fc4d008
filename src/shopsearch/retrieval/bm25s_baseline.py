"""``baseline/bm25s``: the standard BM25 baseline (bm25s, numba backend) over product titles.

Default bm25s parameters (Lucene BM25, k1 = 1.5, b = 0.75), bm25s' own tokenizer with English
stopwords, no stemming, no filters. Used only as a side-by-side baseline in evaluations and
benchmarks; the engine's lexical stage is :class:`~shopsearch.retrieval.lexical.LexicalRetriever`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Self

import numpy as np
import pyarrow as pa

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.progress import Progress
from shopsearch.retrieval.base import check_k


class BM25sBaseline:
    """bm25s over titles, numba backend, default parameters, English stopwords."""

    def index(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Tokenise and index the product titles."""
        import bm25s

        self.keys_: list[ProductKey] = list(
            zip(products["domain"].to_pylist(), products["product_id"].to_pylist(), strict=True)
        )
        tokens = bm25s.tokenize(
            products["title"].to_pylist(), stopwords="en", return_ids=False, show_progress=False
        )
        self.model_ = bm25s.BM25(backend="numba")
        with contextlib.redirect_stderr(io.StringIO()):
            self.model_.index(tokens, show_progress=False)
        return self

    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """Top ``k`` titles by BM25 for one query."""
        return self.retrieve_many([query], k, filters)[0]

    def retrieve_many(
        self, queries: Sequence[str], k: int = 100, filters: Filters | None = None
    ) -> list[Candidates]:
        """Top ``k`` titles by BM25 for each query (batched, numba)."""
        import bm25s

        if not hasattr(self, "model_"):
            raise NotFittedError("BM25sBaseline is not indexed; call index(products) first")
        if filters is not None and not filters.is_empty():
            raise InvalidInputError("baseline/bm25s does not support filters")
        check_k(k, len(self.keys_))
        tokens = bm25s.tokenize(
            list(queries), stopwords="en", return_ids=False, show_progress=False
        )
        out: list[Candidates] = []
        nonempty = [i for i, t in enumerate(tokens) if t]
        results: dict[int, Candidates] = {}
        if nonempty:
            ids, scores = self.model_.retrieve(
                [tokens[i] for i in nonempty], k=k, show_progress=False, n_threads=1
            )
            for row, i in enumerate(nonempty):
                keep = scores[row] > 0
                results[i] = Candidates(
                    keys=[self.keys_[j] for j in ids[row][keep]],
                    scores=scores[row][keep].astype(np.float32),
                )
        for i in range(len(tokens)):
            out.append(results.get(i, Candidates.empty()))
        return out
