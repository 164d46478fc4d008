"""Dense retrieval: products and queries encoded into one vector space, searched with faiss.

Indexing encodes each product's short text (:func:`~shopsearch.text.product_text.product_text`)
through an optional on-disk :class:`~shopsearch.text.embedding_cache.EmbeddingCache`, then
builds an exact ``IndexFlatIP`` for up to ``hnsw_threshold`` products and an ``IndexHNSWFlat``
(inner product) above it. Vectors are unit length, so scores are cosine similarities.

Filters (the same as lexical retrieval) become a boolean mask over rows
(:class:`~shopsearch.retrieval.dense_rows.ProductRows`), and then:

- no filter and no deleted rows: a plain faiss search;
- a flat index, or at most ``exact_limit`` products pass: exact search over just those rows
  (faiss flat search with an ``IDSelectorBitmap``: only selected rows are scored);
- otherwise HNSW with the same selector and ``efSearch`` scaled by 1 / (fraction passing), and
  an exact search for any query that still got fewer than ``k`` results. A market's share of a
  big catalog would need that scaling on every search (3x for a third: 1.0 ms per 200
  neighbours on 51k products), so each market with more than ``exact_limit`` products also
  gets a graph of its own (ids are rows of the whole, so the same selector applies), walked
  when the filter names that market (0.4 ms; recall@200 0.99 against the shared graph's 0.97).

So ``k`` results come back whenever at least ``k`` products pass the filter.

Per-query cost is kept small: query vectors go through an in-memory LRU cache keyed by the
encoder and its normalised query text (:class:`~shopsearch.text.query_cache.QueryVectorCache`;
head queries repeat), the queries that miss it are encoded together with those of concurrent
searches (:class:`~shopsearch.text.query_cache.QueryBatcher`), and
:meth:`DenseRetriever.retrieve` searches with one faiss thread (a single query gains nothing
from OpenMP threads, and on a busy machine waiting for a descheduled one dominates).

Incremental updates: :meth:`DenseRetriever.upsert` and :meth:`DenseRetriever.delete`. A product
whose text is unchanged keeps its vector and only its filter fields are rewritten. A flat index
drops deleted rows at once (rebuilding a flat index is a copy). HNSW cannot remove vectors:
deleted rows stay in the graph as tombstones, masked out of every search, until they exceed
``rebuild_fraction`` of the rows, when the index is compacted and rebuilt. A flat index that
grows past ``hnsw_threshold`` is rebuilt as HNSW. Searching while another thread updates the
same retriever is not supported.

Saved folder: ``config.json`` (parameters and encoder), ``index.faiss`` (``faiss.write_index``),
``market-<i>.faiss`` (the market graphs, listed in ``config.json``; a folder saved before them
loads without) and ``rows.parquet`` (per-row metadata); vectors are read back from the faiss
index.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Self

import faiss
import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.config import RetrievalSettings
from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.progress import Progress
from shopsearch.retrieval.base import (
    Capability,
    Hits,
    QueryPlan,
    Retriever,
    ServingOptions,
    check_k,
)
from shopsearch.retrieval.dense_rows import Mask, ProductRows
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.atomic import atomic_path, write_json, write_parquet
from shopsearch.text.embedding_cache import EmbeddingCache
from shopsearch.text.encoders import Encoder, FloatMatrix, MiniLMEncoder, make_encoder
from shopsearch.text.product_text import product_texts
from shopsearch.text.query_cache import (
    BatchObserver,
    CacheObserver,
    CacheStats,
    QueryBatcher,
    QueryVectorCache,
)

#: Random letter strings :meth:`DenseRetriever.calibrate` measures the noise level with.
NOISE_QUERIES = 200
_FORMAT = "shopsearch-dense"
_FORMAT_VERSION = 1
_REQUIRED = (
    "domain",
    "product_id",
    "title",
    "brand",
    "category",
    "attributes",
    "price",
    "in_stock",
)


@contextlib.contextmanager
def _faiss_threads(n: int) -> Iterator[None]:
    """faiss OpenMP threads for searches from this thread (an OpenMP setting per thread)."""
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise InvalidInputError(f"{name}={value} is not allowed; use {name} >= 1")


@RETRIEVERS.register()
class DenseRetriever(Retriever):
    """Dense retrieval with an :class:`~shopsearch.text.encoders.Encoder` and faiss.

    Args:
        encoder: encodes queries and product texts; defaults to :class:`MiniLMEncoder`.
        cache_dir: embedding cache root (e.g. ``W/cache/embeddings``); ``None``: no cache.
        hnsw_threshold: above this many products the index is HNSW, else exact flat.
        hnsw_m: HNSW graph degree.
        ef_construction: HNSW build-time beam width.
        ef_search: HNSW search beam width (raised to ``k`` when ``k`` is larger).
        exact_limit: with a filter that at most this many products pass, search them exactly.
        rebuild_fraction: rebuild HNSW when deleted rows exceed this fraction of the rows.
        query_cache_size: query vectors kept in memory (least recently used dropped); 0: none.
            :meth:`configure_queries` changes it after loading (the server's settings).
        query_batch: most queries of concurrent searches encoded in one forward pass; 1: none.

    Attributes:
        rows_: per-row keys and filter fields (:class:`ProductRows`).
        vectors_: float32 ``[rows, dim]``, row ``i`` has faiss id ``i``.
        index_: the faiss index (``IndexFlatIP`` or ``IndexHNSWFlat``).
        exact_index_: the flat index holding the vectors, for exact searches.
    """

    name = "dense"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"updates", "vectors"})
    rows_: ProductRows
    vectors_: FloatMatrix
    index_: faiss.Index
    exact_index_: faiss.Index
    config_keys: ClassVar[list[str]] = [
        "hnsw_threshold",
        "hnsw_m",
        "ef_construction",
        "ef_search",
        "exact_limit",
        "rebuild_fraction",
        "query_cache_size",
    ]

    def __init__(
        self,
        encoder: Encoder | None = None,
        cache_dir: Path | None = None,
        hnsw_threshold: int = 20_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        exact_limit: int = 10_000,
        rebuild_fraction: float = 0.2,
        query_cache_size: int = 1024,
        query_batch: int = 16,
    ) -> None:
        for name, value in (
            ("hnsw_m", hnsw_m),
            ("ef_construction", ef_construction),
            ("ef_search", ef_search),
        ):
            _positive(name, value)
        _positive("query_batch", query_batch)
        if hnsw_threshold < 0 or exact_limit < 0 or query_cache_size < 0:
            raise InvalidInputError(
                f"hnsw_threshold={hnsw_threshold}, exact_limit={exact_limit} and "
                f"query_cache_size={query_cache_size} must all be >= 0"
            )
        if not 0 < rebuild_fraction <= 1:
            raise InvalidInputError(
                f"rebuild_fraction={rebuild_fraction} is not allowed; use 0 < fraction <= 1"
            )
        self.encoder = encoder if encoder is not None else MiniLMEncoder()
        self.cache_dir = cache_dir
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_limit = exact_limit
        self.rebuild_fraction = rebuild_fraction
        self.query_cache_size = query_cache_size
        #: Serving override of the fitted :attr:`match_threshold_` (``None``: use that).
        self.min_similarity: float | None = None
        #: Cosine a neighbour must reach to match the query: the noise level of this encoder over
        #: this catalog (:meth:`calibrate`), fitted by :meth:`fit_matches` or on first use.
        self.match_threshold_: float | None = None
        self._cache: EmbeddingCache | None = None
        self.query_cache = QueryVectorCache(query_cache_size)
        self._batcher = QueryBatcher(self.encoder.encode_queries, query_batch)
        self._encoder_id: tuple[str, str] | None = None
        self._encoder_id_lock = threading.Lock()
        #: Each large market's own HNSW graph (ids: rows of the whole), see :meth:`_search`.
        self.market_graphs_: dict[str, faiss.Index] = {}

    # -- building ------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "index_"):
            raise NotFittedError(
                "DenseRetriever is not indexed; call index(products) or DenseRetriever.load(path)"
            )

    @staticmethod
    def latest(products: pa.Table) -> tuple[pa.Table, list[ProductKey]]:
        """``products`` with one row per key (the last, as in the lexical index), and the keys."""
        missing = [c for c in _REQUIRED if c not in products.column_names]
        if missing:
            raise InvalidInputError(
                f"products table lacks columns {missing}; give a table with the workspace "
                "'products' schema (shopsearch.store.schema)"
            )
        keys = list(
            zip(
                products.column("domain").to_pylist(),
                products.column("product_id").to_pylist(),
                strict=True,
            )
        )
        last = {key: row for row, key in enumerate(keys)}
        if len(last) == len(keys):
            return products, keys
        rows = sorted(last.values())
        return products.take(pa.array(rows)), [keys[row] for row in rows]

    def _encode_items(self, products: pa.Table, progress: Progress | None) -> FloatMatrix:
        texts = product_texts(products)
        if self.cache_dir is None:
            vectors = self.encoder.encode_items(texts, progress)
        else:
            if self._cache is None:
                self._cache = EmbeddingCache(self.cache_dir, self.encoder)
            vectors = self._cache.encode_items(texts, progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _build_index(self) -> None:
        """(Re)build the faiss index over ``vectors_``: flat or HNSW by size."""
        dim = self.vectors_.shape[1]
        if len(self.vectors_) > self.hnsw_threshold:
            hnsw = faiss.IndexHNSWFlat(dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = self.ef_construction
            hnsw.add(self.vectors_)
            self.index_ = hnsw
            self.exact_index_ = faiss.downcast_index(hnsw.storage)
        else:
            self.index_ = self.exact_index_ = faiss.IndexFlatIP(dim)
            self.index_.add(self.vectors_)
        self._build_market_graphs()

    def _is_hnsw(self) -> bool:
        return self.exact_index_ is not self.index_

    def _build_market_graphs(self) -> None:
        """One HNSW graph per market with more than ``exact_limit`` rows, when the catalog
        has several markets and the whole is an HNSW index (see :meth:`_search`)."""
        self.market_graphs_ = {}
        rows = self.rows_
        if not self._is_hnsw() or len(rows.domain_codes) < 2:
            return
        for domain, code in rows.domain_codes.items():
            members = np.flatnonzero((rows.domain == code) & rows.alive)
            if len(members) <= self.exact_limit:
                continue
            graph = faiss.IndexHNSWFlat(
                self.vectors_.shape[1], self.hnsw_m, faiss.METRIC_INNER_PRODUCT
            )
            graph.hnsw.efConstruction = self.ef_construction
            market = faiss.IndexIDMap(graph)
            market.add_with_ids(self.vectors_[members], members.astype(np.int64))
            self.market_graphs_[domain] = market

    @classmethod
    def for_index(
        cls, folder: Path, settings: RetrievalSettings, cache_dir: Path
    ) -> DenseRetriever:
        """A source over ``[retrieval] dense_encoder`` (MiniLM, or the model2vec encoder
        distilled once per machine into :func:`~shopsearch.text.static_encoder.default_folder`)
        with the workspace's embedding cache and the serving settings."""
        encoder: Encoder | None = None
        if settings.dense_encoder != MiniLMEncoder.name:
            config: dict[str, object] = {}
            if settings.dense_encoder == "model2vec":
                # no folder: the machine's encoder cache, so a bundle names no path and a
                # moved workspace (or another machine) finds or re-distils the same model
                config = {"pca_dims": settings.model2vec_dims}
            encoder = make_encoder(settings.dense_encoder, config)
        return cls(
            encoder=encoder,
            cache_dir=cache_dir,
            hnsw_threshold=settings.hnsw_threshold,
            query_cache_size=settings.query_cache_size,
            query_batch=settings.query_batch,
        )

    def index(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Encode and index ``products`` (the workspace ``products`` schema), replacing all.

        Args:
            products: one row per product; a key given more than once keeps its last row.
            progress: reports ``(done, total)`` while encoding texts not in the cache.
        """
        products, _ = self.latest(products)
        vectors = self._encode_items(products, progress)
        rows = ProductRows()
        rows.append(products)
        self.rows_ = rows
        self.vectors_ = vectors
        self._build_index()
        self.match_threshold_ = None  # fitted on first use, or by fit_matches
        return self

    def upsert(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Add new products and replace known ones (by key); indexes them if nothing is yet.

        A known product whose text (so vector) is unchanged only has its filter fields
        (price, stock, brand, category, ...) rewritten in place.
        """
        if not hasattr(self, "index_"):
            return self.index(products, progress)
        products, keys = self.latest(products)
        vectors = self._encode_items(products, progress)
        old = np.fromiter((self.rows_.row_of.get(k, -1) for k in keys), np.int64, len(keys))
        known = old >= 0
        same = np.zeros(len(keys), np.bool_)
        same[known] = (self.vectors_[old[known]] == vectors[known]).all(axis=1)
        if same.any():
            self.rows_.update(old[same], products.filter(pa.array(same)))
        self.rows_.kill(old[known & ~same])
        if not same.all():
            first = len(self.rows_)
            self.rows_.append(products.filter(pa.array(~same)))
            self.vectors_ = np.concatenate([self.vectors_, vectors[~same]])
            self.index_.add(vectors[~same])
            self._add_to_market_graphs(np.arange(first, len(self.rows_)))
        self._maintain()
        return self

    def _add_to_market_graphs(self, rows: npt.NDArray[np.int64]) -> None:
        """Add new ``rows`` to their market's graph (a market without one has too few rows
        for it until the next rebuild: it is searched exactly or on the whole index)."""
        names = {code: name for name, code in self.rows_.domain_codes.items()}
        for code in np.unique(self.rows_.domain[rows]).tolist():
            graph = self.market_graphs_.get(names[code])
            if graph is not None:
                members = rows[self.rows_.domain[rows] == code]
                graph.add_with_ids(self.vectors_[members], members.astype(np.int64))

    def delete(self, keys: Iterable[ProductKey]) -> int:
        """Remove products by key; unknown keys are ignored. Returns how many were removed."""
        self._check_fitted()
        rows = np.unique(
            np.array([self.rows_.row_of[k] for k in keys if k in self.rows_.row_of], np.int64)
        )
        self.rows_.kill(rows)
        self._maintain()
        return len(rows)

    def _maintain(self) -> None:
        """Compact dead rows (flat: always; HNSW: past ``rebuild_fraction``); flat → HNSW."""
        dead = len(self.rows_) - self.rows_.n_alive
        hnsw = self._is_hnsw()
        if dead and (not hnsw or dead > self.rebuild_fraction * len(self.rows_)):
            self.vectors_ = self.vectors_[self.rows_.compact()]
            self._build_index()
        elif not hnsw and len(self.rows_) > self.hnsw_threshold:
            self._build_index()

    # -- searching -----------------------------------------------------------------------------
    def clear_query_cache(self) -> None:
        """Forget the cached query vectors (benchmarks measure cold query encoding this way)."""
        self.query_cache.clear()

    def configure_queries(
        self,
        cache_size: int | None = None,
        batch: int | None = None,
        cache_observer: CacheObserver | None = None,
        batch_observer: BatchObserver | None = None,
    ) -> None:
        """Serving-time query settings: cache size (0: off), batch size (1: off), observers.

        ``None`` leaves a setting as it is. Call before searches start (not thread safe against
        searches in flight).
        """
        if cache_size is not None:
            if cache_size < 0:
                raise InvalidInputError(
                    f"query cache_size={cache_size} is not allowed; use >= 0 (0: no cache)"
                )
            self.query_cache_size = cache_size
            self.query_cache.resize(cache_size)
        if batch is not None:
            _positive("query_batch", batch)
            self._batcher.max_batch = batch
        if cache_observer is not None:
            self.query_cache.observer = cache_observer
        if batch_observer is not None:
            self._batcher.observer = batch_observer

    def configure(self, options: ServingOptions) -> None:
        """Serving settings: the query-vector cache and encoding batches, and their observers."""
        self.configure_queries(
            options.query_cache_size,
            options.query_batch,
            options.query_cache_observer,
            options.batch_observer,
        )
        if options.min_similarity is not None:
            self.min_similarity = options.min_similarity

    def matches(self, candidates: Candidates) -> npt.NDArray[np.bool_]:
        """Candidates closer (cosine) to the query than the match threshold: ``[retrieval]
        min_similarity`` when set, else the fitted :attr:`match_threshold_`."""
        threshold = self.min_similarity
        if threshold is None:
            if self.match_threshold_ is None:  # a bundle saved before thresholds were fitted
                self.match_threshold_ = self.calibrate()
            threshold = self.match_threshold_
        return np.asarray(candidates.scores > threshold, dtype=bool)

    def fit_matches(self) -> None:
        """Fit :attr:`match_threshold_` now (``shopsearch index`` does, so that the bundle
        keeps it; otherwise the first search that asks fits it)."""
        self.match_threshold_ = self.calibrate()

    def calibrate(self, n: int = NOISE_QUERIES, seed: int = 0) -> float:
        """The noise level of this encoder over this catalog: the highest cosine between any
        product and ``n`` random letter strings (1-2 words of 4-11 letters).

        A nearest neighbour always exists; one closer to the query than the closest product
        is to gibberish is taken to match it. The level grows with the catalog (more products,
        higher extremes), so it is fitted per index rather than fixed: e.g. MiniLM over the
        45k Home Depot products puts random strings' best neighbours at a median cosine of
        0.37, at most 0.53, while relevant judged products have a median of 0.46-0.58.
        """
        self._check_fitted()
        rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        texts = [
            " ".join("".join(rng.choice(letters, int(rng.integers(4, 12))))
                     for _ in range(int(rng.integers(1, 3))))
            for _ in range(n)
        ]  # fmt: skip
        with _faiss_threads(1):
            found = self._search(self.encoder.encode_queries(texts), 1, None)
        best = [float(c.scores[0]) for c in found if len(c)]
        return max(best, default=0.0)

    @property
    def vector_space(self) -> str:
        """``encoder name@version``: the space of this source's product and query vectors."""
        name, version = self._query_key_prefix()
        return f"{name}@{version}"

    def rows_of(self, keys: Sequence[ProductKey]) -> npt.NDArray[np.int64]:
        """Each key's row of :attr:`vectors_` (-1 for a product the index does not hold)."""
        self._check_fitted()
        row_of = self.rows_.row_of
        return np.fromiter((row_of.get(key, -1) for key in keys), np.int64, len(keys))

    def query_cache_stats(self) -> CacheStats:
        """Hits, misses and evictions of the query-vector cache."""
        return self.query_cache.stats()

    def _query_key_prefix(self) -> tuple[str, str]:
        if self._encoder_id is None:  # the version may read package metadata: once
            with self._encoder_id_lock:
                self._encoder_id = (self.encoder.name, self.encoder.version)
        return self._encoder_id

    def query_vectors(self, queries: Sequence[str], count: bool = True) -> FloatMatrix:
        """The query vectors retrieval uses: from the cache, else encoded and cached.

        Args:
            queries: query texts.
            count: count the lookups in the cache's hit rate; ``False`` for a second lookup of
                a query this request already looked up (a ranking feature reusing the vector
                retrieval encoded), which would otherwise count as an extra hit.
        """
        self._check_fitted()
        return self._query_vectors(queries, count)

    def _query_vectors(self, queries: Sequence[str], count: bool = True) -> FloatMatrix:
        """Query vectors: cached ones, the rest encoded (batched with concurrent searches)."""
        out = np.empty((len(queries), self.vectors_.shape[1]), np.float32)
        name, version = self._query_key_prefix()
        keys = [(name, version, self.encoder.query_key(q)) for q in queries]
        todo: dict[tuple[str, str, str], list[int]] = {}
        found = self.query_cache.lookup(keys, count)
        for i, (key, vector) in enumerate(zip(keys, found, strict=True)):
            if vector is None:
                todo.setdefault(key, []).append(i)
            else:
                out[i] = vector
        if not todo:
            return out
        texts = [queries[positions[0]] for positions in todo.values()]
        encoded = (
            self._batcher.encode(texts)
            if len(texts) == 1
            else (
                self.encoder.encode_queries(texts)  # an offline batch: big enough on its own
            )
        )
        for positions, vector in zip(todo.values(), encoded, strict=True):
            out[positions] = vector
        self.query_cache.store(list(todo), list(encoded))
        return out

    def _exact(
        self, queries: FloatMatrix, k: int, selector: faiss.IDSelector | None
    ) -> tuple[FloatMatrix, npt.NDArray[np.int64]]:
        params = faiss.SearchParameters()
        params.sel = selector
        return self.exact_index_.search(queries, k, params=params)

    def _hnsw(
        self,
        queries: FloatMatrix,
        k: int,
        ef: int,
        selector: faiss.IDSelector | None,
        index: faiss.Index | None = None,
    ) -> tuple[FloatMatrix, npt.NDArray[np.int64]]:
        """HNSW search of the whole index, or of a market's graph (ids are the whole's rows;
        the selector is read on them)."""
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # missing in stubs
        params.efSearch = ef
        params.sel = selector
        # an IndexIDMap hands the parameters on, reading the selector on its own ids
        return (self.index_ if index is None else index).search(queries, k, params=params)

    def _filter_mask(self, filters: Filters | None) -> tuple[Mask | None, int]:
        """Rows that may be returned (``None``: every row) and how many there are."""
        rows = self.rows_
        if filters is None or filters.is_empty():
            mask = None if rows.n_alive == len(rows) else rows.alive
        else:
            mask = rows.mask(filters)
        return mask, len(rows) if mask is None else int(np.count_nonzero(mask))

    def _search(self, queries: FloatMatrix, k: int, filters: Filters | None) -> list[Candidates]:
        n_rows = len(self.rows_)
        mask, allowed = self._filter_mask(filters)
        if allowed == 0:
            return [Candidates.empty() for _ in range(len(queries))]
        k = min(k, allowed)
        selector: faiss.IDSelector | None = None
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")  # read by the selector until we return
            selector = faiss.IDSelectorBitmap(n_rows, faiss.swig_ptr(bits))
        market = self.market_graphs_.get(filters.domain) if filters and filters.domain else None
        if not self._is_hnsw() or (mask is not None and allowed <= self.exact_limit):
            scores, ids = self._exact(queries, k, selector)
        else:
            # The graph of the filter's market when there is one: a market's share of the
            # whole would otherwise need ef scaled by whole / allowed (3x for a third).
            index, n_graph = (self.index_, n_rows) if market is None else (market, market.ntotal)
            ef = max(self.ef_search, k)
            if mask is not None:
                ef = min(-(-ef * n_graph // allowed), n_graph)
            scores, ids = self._hnsw(queries, k, ef, selector, index)
            short = (ids < 0).any(axis=1)
            if short.any():
                scores[short], ids[short] = self._exact(queries[short], k, selector)
        keys = self.rows_.keys
        return [
            Candidates(keys=[keys[i] for i in ids[q].tolist()], scores=scores[q], total=allowed)
            for q in range(len(queries))
        ]

    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """The ``k`` products most similar to ``query`` (cosine) that pass ``filters``.

        Fewer than ``k`` come back only when fewer pass the filter; ``total`` is how many pass.
        """
        return self.search(query, k, filters).candidates

    def search(
        self,
        query: str,
        k: int = 100,
        filters: Filters | None = None,
        plan: QueryPlan | None = None,
    ) -> Hits:
        """:meth:`retrieve`, with the query's vector (for later stages in the same space)."""
        self._check_fitted()
        check_k(k)
        vector = self._query_vectors([query])
        # On 2 busy cores a 50k flat search took 43 ms with 2 OpenMP threads, 8 ms with 1.
        with _faiss_threads(1):
            return Hits(self._search(vector, k, filters)[0], query_vector=vector[0])

    def retrieve_many(
        self, queries: Sequence[str], k: int = 100, filters: Filters | None = None
    ) -> list[Candidates]:
        """:meth:`retrieve` for many queries, encoded and searched in one batch."""
        self._check_fitted()
        check_k(k)
        if not queries:
            return []
        return self._search(self._query_vectors(queries), k, filters)

    # -- saving --------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write ``config.json``, ``index.faiss`` and ``rows.parquet`` to the folder ``path``."""
        self._check_fitted()
        path = Path(path)
        with atomic_path(path / "index.faiss") as tmp:
            faiss.write_index(self.index_, str(tmp))
        markets: dict[str, str] = {}
        for number, (domain, graph) in enumerate(sorted(self.market_graphs_.items())):
            markets[domain] = f"market-{number}.faiss"
            with atomic_path(path / markets[domain]) as tmp:
                faiss.write_index(graph, str(tmp))
        write_parquet(path / "rows.parquet", self.rows_.to_table())
        write_json(
            path / "config.json",
            {
                "format": _FORMAT,
                "format_version": _FORMAT_VERSION,
                "retriever": self.name,
                "config": self.get_config(),
                "encoder": {
                    "name": self.encoder.name,
                    "version": self.encoder.version,
                    "config": self.encoder.get_config(),
                },
                "index": "hnsw" if self._is_hnsw() else "flat",
                "rows": len(self.rows_),
                "match_threshold": self.match_threshold_,
                "market_graphs": markets,
            },
        )

    @classmethod
    def load(
        cls, path: Path, encoder: Encoder | None = None, cache_dir: Path | None = None
    ) -> Self:
        """Read a retriever written by :meth:`save`.

        Args:
            path: the saved folder.
            encoder: an already loaded encoder to share (must be the saved one: same name and
                version); ``None`` builds the saved encoder from the registry.
            cache_dir: embedding cache root for later :meth:`upsert` calls.

        Raises:
            WorkspaceError: the folder is missing, not a dense index, or inconsistent.
            InvalidInputError: ``encoder`` is not the encoder the index was built with.
        """
        path = Path(path)
        try:
            config = orjson.loads((path / "config.json").read_bytes())
        except FileNotFoundError:
            raise WorkspaceError(
                f"no dense index at {path} (missing config.json); write one with "
                "DenseRetriever.save(path)"
            ) from None
        if config.get("format") != _FORMAT or config.get("format_version") != _FORMAT_VERSION:
            raise WorkspaceError(
                f"{path} holds {config.get('format')!r} version {config.get('format_version')}, "
                f"not {_FORMAT!r} version {_FORMAT_VERSION}; re-index and save again"
            )
        saved = config["encoder"]
        if encoder is None:
            encoder = make_encoder(saved["name"], saved["config"])
        if (encoder.name, encoder.version) != (saved["name"], saved["version"]):
            raise InvalidInputError(
                f"the index at {path} was built with encoder {saved['name']!r} version "
                f"{saved['version']!r}, not {encoder.name!r} version {encoder.version!r}; "
                "pass that encoder or re-index"
            )
        retriever = cls(encoder=encoder, cache_dir=cache_dir, **config["config"])
        index = faiss.read_index(str(path / "index.faiss"))
        retriever.rows_ = ProductRows.from_table(pq.read_table(path / "rows.parquet"))
        if index.ntotal != len(retriever.rows_) or index.ntotal != config["rows"]:
            raise WorkspaceError(
                f"{path}: index.faiss has {index.ntotal} vectors but rows.parquet "
                f"{len(retriever.rows_)} rows; the save was interrupted: save again"
            )
        retriever.index_ = index
        if isinstance(index, faiss.IndexHNSW):
            retriever.exact_index_ = faiss.downcast_index(index.storage)
        else:
            retriever.exact_index_ = index
        retriever.vectors_ = np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), np.float32)
        retriever.match_threshold_ = config.get("match_threshold")
        # saved before market graphs: every market is searched on the whole index
        for domain, name in config.get("market_graphs", {}).items():
            retriever.market_graphs_[domain] = faiss.read_index(str(path / name))
        return retriever
