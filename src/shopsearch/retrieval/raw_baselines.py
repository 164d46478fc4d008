"""Plain library baselines that benchmarks run beside shopsearch's own retrievers.

``baseline/tantivy`` is tantivy as a user would set it up in a few lines: the title only,
tantivy's ``en_stem`` tokenizer, tantivy's own (lenient) query parser, no typo tolerance, no
filters or facets. Hits map back to product keys the same way :mod:`.lexical` does (an integer
row fast field), so a benchmark comparing the two measures the query-side cost of the wrapper.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self, cast

import numpy as np
import pyarrow as pa
import tantivy

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.progress import Progress
from shopsearch.retrieval.base import Retriever, check_k
from shopsearch.retrieval.lexical_schema import read_products
from shopsearch.retrieval.lexical_store import ROWS_FILE, IndexHome, read_rows, write_rows


def _raw_schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("title", tokenizer_name="en_stem")
    builder.add_unsigned_field("row", fast=True)
    return builder.build()


class RawTantivyRetriever(Retriever):
    """tantivy with its query parser over product titles; the ``baseline/tantivy`` system.

    Args:
        index_dir: directory to build the index in; ``None`` keeps it in a temporary directory.
    """

    name: ClassVar[str] = "baseline/tantivy"

    home_: IndexHome
    #: row id → product key.
    keys_: dict[int, ProductKey]

    def __init__(self, index_dir: str | Path | None = None) -> None:
        self.index_dir = None if index_dir is None else Path(index_dir)

    def index(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Index the titles of ``products``, replacing any previous index.

        A key that occurs more than once keeps its last row.
        """
        latest = {product.key: product.title for product in read_products(products)}
        home = IndexHome.create(self.index_dir, _raw_schema())
        with home.writer() as writer:
            for row, title in enumerate(latest.values()):
                doc = tantivy.Document()
                doc.add_text("title", title)
                doc.add_unsigned("row", row)
                writer.add_document(doc)
        self.home_ = home
        self.keys_ = dict(enumerate(latest))
        return self

    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """The top ``k`` titles for ``query`` parsed by tantivy's lenient query parser.

        Raises:
            InvalidInputError: if ``filters`` restrict anything (the baseline has no filters).
        """
        check_k(k)
        if filters is not None and not filters.is_empty():
            raise InvalidInputError(
                f"{self.name} has no filters, got {filters}; use the lexical retriever to filter"
            )
        if not hasattr(self, "home_"):
            raise NotFittedError(f"{self.name} has no index; call index(products) first")
        index = self.home_.index
        searcher = self.home_.searcher()
        if searcher.num_docs == 0:
            return Candidates.empty()
        parsed, _errors = index.parse_query_lenient(query, ["title"])
        result = searcher.search(parsed, limit=min(k, searcher.num_docs), count=True)
        rows = cast(list[int], searcher.fast_field_values("row", [a for _, a in result.hits]))
        return Candidates(
            keys=[self.keys_[row] for row in rows],
            scores=np.array([score for score, _ in result.hits], dtype=np.float32),
            total=result.count,  # type: ignore[attr-defined]  # missing from tantivy's stub
        )

    def save(self, path: Path) -> None:
        """Copy the index and its row map to ``path``."""
        if not hasattr(self, "home_"):
            raise NotFittedError(f"{self.name} has no index; call index(products) first")
        target = Path(path)
        if self.home_.temporary or target.resolve() != self.home_.root.resolve():
            self.home_.copy_to(target)
        write_rows(target / ROWS_FILE, {key: row for row, key in self.keys_.items()})

    @classmethod
    def load(cls, path: Path) -> Self:
        """Open an index written by :meth:`save`, in place."""
        retriever = cls(path)
        retriever.home_ = IndexHome.open(Path(path))
        retriever.keys_ = {row: key for key, row in read_rows(Path(path) / ROWS_FILE).items()}
        return retriever
