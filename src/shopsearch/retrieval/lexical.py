"""The lexical retriever: BM25 over product text on tantivy, with typo tolerance, filters,
facet counts and incremental updates.

Searched fields, with default boosts: title ×3, brand ×2, category names, description,
attributes (keys and values), all analyzed with English stemming and ASCII folding
(:mod:`.lexical_schema`). Query text is never given to tantivy's query parser: it is analyzed
like the documents and built into a query with tantivy's Query API (:mod:`.lexical_query`), so
any user input (quotes, colons, ``AND``, ``*``, emoji) is just words.

Behaviour worth knowing:

* **Typos**: words of ``fuzzy_min_length`` (5) or more letters (as typed and as stemmed) also
  match terms one edit away (a transposition is one edit) on ``fuzzy_fields``, at
  ``fuzzy_boost`` (0.3) of the field's weight and a constant score, so an exact match always
  outranks a fuzzy-only one, all else equal. Shorter words and words with digits match
  exactly only.
* **Measurements** are one word on both sides: ``6 in.``, ``6 inch``, ``6"`` and ``6in`` are
  all indexed and searched as ``6in``, ``60 watts`` as ``60w`` (:mod:`shopsearch.text.units`);
  a product's text also keeps the bare number. An index built before this (format 1) does not
  load: re-index (``shopsearch index``).
* **Matching**: a product matches when it has at least ``max(1, ceil(min_match × words))`` of
  the query's distinct words (default: any one word); ``total`` and facets count these.
* **No words** (empty, whitespace or punctuation only): every product passing the filters
  matches (browsing), in index order with score 0.
* **Filters** are clauses of the tantivy query, so ``total`` and facets are exact.
* **Facets** (:meth:`LexicalRetriever.facets`) count the whole matching set, not the top ``k``:
  ``category`` per path prefix at every level (keys such as ``"Furniture > Sofas"``), ``brand``
  as spelled in the catalog, and ``price`` in fixed buckets cut at ``price_buckets`` (default
  ``0-25, 25-50, 50-100, 100-250, 250-500, 500-1000, 1000+``; a bucket includes its lower edge
  and excludes its upper one; products without a price are in no bucket). Values with a count
  of 0 are left out; ``category`` and ``brand`` keep the ``facet_size`` most frequent values.
* **Storage**: with ``index_dir`` the index is built in ``index_dir/tantivy`` and every change
  also rewrites the bundle's small files, so the directory is always a loadable bundle and
  ``save(index_dir)`` costs nothing; without it, the index lives in a temporary directory
  deleted with the retriever and :meth:`~LexicalRetriever.save` copies it. A loaded retriever
  works in the directory it was loaded from: :meth:`~LexicalRetriever.add` and
  :meth:`~LexicalRetriever.delete` update that bundle in place.
* ``k`` above the number of products is allowed; fewer candidates come back.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Self, cast

import numpy as np
import orjson
import pyarrow as pa
import tantivy

from shopsearch.catalog.candidates import Candidates, Facets, Filters, ProductKey
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
from shopsearch.retrieval.fuzzy_terms import FuzzyTerms
from shopsearch.retrieval.lexical_query import (
    TermBoost,
    boosted,
    facet_aggregation,
    filter_queries,
    full_query,
    head_boost,
    read_facets,
    text_query,
)
from shopsearch.retrieval.lexical_schema import (
    TEXT_FIELDS,
    QueryAnalyzer,
    build_schema,
    key_term,
    latest_products,
    read_products,
)
from shopsearch.retrieval.lexical_store import (
    CONFIG_FILE,
    ROWS_FILE,
    IndexHome,
    read_rows,
    write_rows,
)
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.atomic import write_json
from shopsearch.text.query_cache import CacheObserver, CacheStats, LRUCache

#: Version of the bundle layout written by :meth:`LexicalRetriever.save` (2: measurements
#: normalised in the indexed text, :mod:`shopsearch.text.units`).
FORMAT_VERSION = 2
DEFAULT_FIELD_BOOSTS: Mapping[str, float] = {
    "title": 3.0,
    "brand": 2.0,
    "category": 1.0,
    "description": 1.0,
    "attributes": 1.0,
}
DEFAULT_FUZZY_FIELDS = ("title", "brand", "category")
DEFAULT_PRICE_BUCKETS = (25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
#: Up to this many products, a key set is a union of term queries: on 50k products it finds
#: 100 keys in 0.36 ms against the term-set query's 0.64 (200: 0.68 against 0.82); from about
#: 500 keys on, the term-set query is faster (1,000: 2.4 against 3.6 ms).
_FEW_KEYS = 256


@RETRIEVERS.register()
class LexicalRetriever(Retriever):
    """BM25 retrieval on tantivy with fuzzy matching, filters, facets and incremental updates.

    Args:
        index_dir: directory to build the index in (a bundle directory, see the module
            docstring); ``None`` keeps it in a temporary directory.
        field_boosts: weight of each searched field (of ``title, brand, category,
            description, attributes``); fields left out are not searched.
        fuzzy_fields: fields where words may match with one typo.
        fuzzy_boost: weight of a typo match relative to the field's weight.
        fuzzy_min_length: shortest word (in letters) that may match with a typo.
        min_match: fraction of the query's words a product must contain (0: any one word,
            1: all of them).
        head_boost: weight of a product whose own head phrase (what its title says it is) is
            the query's head (``QueryPlan.head``), on top of matching the head's words.
        price_buckets: upper edges of the price facet's buckets, increasing; the last bucket
            is open-ended.
        facet_size: most values listed per ``category`` and ``brand`` facet.

    Example:
        >>> lexical = LexicalRetriever().index(products)          # doctest: +SKIP
        >>> lexical.retrieve("sofa", k=10, Filters(domain="us"))  # doctest: +SKIP
    """

    name: ClassVar[str] = "lexical"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"facets", "updates"})
    config_keys: ClassVar[list[str]] = [
        "field_boosts",
        "fuzzy_fields",
        "fuzzy_boost",
        "fuzzy_min_length",
        "min_match",
        "head_boost",
        "price_buckets",
        "facet_size",
    ]

    home_: IndexHome
    schema_: tantivy.Schema
    analyzer_: QueryAnalyzer
    #: row id → product key, for every row ever written in this session (append-only).
    keys_: dict[int, ProductKey]
    #: product key → row id of the live document of each indexed product.
    rows_: dict[ProductKey, int]
    next_row_: int

    def __init__(
        self,
        index_dir: str | Path | None = None,
        *,
        field_boosts: Mapping[str, float] = DEFAULT_FIELD_BOOSTS,
        fuzzy_fields: Sequence[str] = DEFAULT_FUZZY_FIELDS,
        fuzzy_boost: float = 0.3,
        fuzzy_min_length: int = 5,
        min_match: float = 0.0,
        head_boost: float = 3.0,
        price_buckets: Sequence[float] = DEFAULT_PRICE_BUCKETS,
        facet_size: int = 100,
    ) -> None:
        self.index_dir = None if index_dir is None else Path(index_dir)
        self.field_boosts = dict(field_boosts)
        self.fuzzy_fields = tuple(fuzzy_fields)
        self.fuzzy_boost = fuzzy_boost
        self.fuzzy_min_length = fuzzy_min_length
        self.min_match = min_match
        self.head_boost = head_boost
        self.price_buckets = tuple(price_buckets)
        self.facet_size = facet_size
        # recent search() results; the generation in each key changes with every index write
        self.results: LRUCache[Hits] = LRUCache(0)
        self._generation = 0
        # each fuzzy field's terms by their neighbours, for the index of one generation
        self._fuzzy_terms: tuple[int, dict[str, FuzzyTerms]] = (-1, {})

    # -- building ------------------------------------------------------------------------------
    @classmethod
    def for_index(
        cls, folder: Path, settings: RetrievalSettings, cache_dir: Path
    ) -> LexicalRetriever:
        """A lexical source built in place in the bundle's ``folder``."""
        return cls(folder)

    def index(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Index ``products`` (the workspace products schema), replacing any previous index.

        A key that occurs more than once keeps its last row.
        """
        self._check_params()
        self._generation += 1
        latest = latest_products(products)
        home = IndexHome.create(self.index_dir, build_schema())
        with home.writer() as writer:
            for row, product in enumerate(latest):
                writer.add_document(product.document(row))
        self.home_ = home
        self.schema_ = home.index.schema
        self.analyzer_ = QueryAnalyzer()
        self.rows_ = {product.key: row for row, product in enumerate(latest)}
        self.keys_ = {row: product.key for row, product in enumerate(latest)}
        self.next_row_ = len(latest)
        self._persist()
        self._generation += 1
        self._find_fuzzy_terms()  # here, not in the next search
        return self

    def upsert(self, products: pa.Table) -> Self:
        """Add products without a rebuild; a product whose key is indexed is replaced.

        The change is committed and visible to the next search when this returns.
        """
        home = self._fitted()
        rows = dict(self.rows_)
        self._generation += 1  # before and after the commit: no result of either side is kept
        with home.writer() as writer:
            for product in read_products(products):
                if product.key in rows:
                    writer.delete_documents_by_term("key", key_term(product.key))
                row = self.next_row_
                self.next_row_ += 1
                self.keys_[row] = product.key
                rows[product.key] = row
                writer.add_document(product.document(row))
        self.rows_ = rows
        self._persist()
        self._generation += 1
        self._find_fuzzy_terms()  # here, not in the next search
        return self

    def delete(self, keys: Iterable[ProductKey]) -> int:
        """Remove products by key without a rebuild; returns how many were indexed.

        Keys that are not indexed are ignored.
        """
        home = self._fitted()
        present = [key for key in dict.fromkeys(keys) if key in self.rows_]
        if present:
            generation, kept = self._fuzzy_terms
            fresh = generation == self._generation
            self._generation += 1
            with home.writer() as writer:
                for key in present:
                    writer.delete_documents_by_term("key", key_term(key))
            gone = set(present)
            self.rows_ = {key: row for key, row in self.rows_.items() if key not in gone}
            self._persist()
            self._generation += 1
            if fresh:  # a deleted product's terms match nothing (tantivy's walk finds them
                # too, until the segments merge): the terms found before give the same products
                self._fuzzy_terms = (self._generation, kept)
        return len(present)

    def __len__(self) -> int:
        """How many products are indexed."""
        self._fitted()
        return len(self.rows_)

    # -- searching -----------------------------------------------------------------------------
    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """The top ``k`` products for ``query`` that pass ``filters``, by BM25 score.

        Args:
            query: the user's text, used as typed (no query syntax).
            k: how many candidates at most.
            filters: restrictions applied inside the index.

        Returns:
            Candidates best first; ``total`` is how many products matched in all.
        """
        check_k(k)
        searcher = self._fitted().searcher()
        return self._top(searcher, self._query(query, filters), k)

    def facets(self, query: str, filters: Filters | None = None) -> Facets:
        """Facet counts over every product matching ``query`` and ``filters``.

        Returns:
            ``{"category": {path: n}, "brand": {brand: n}, "price": {bucket: n}}``, see the
            module docstring for the keys.
        """
        searcher = self._fitted().searcher()
        return self._facets(searcher, self._query(query, filters))

    def search(
        self,
        query: str,
        k: int = 100,
        filters: Filters | None = None,
        plan: QueryPlan | None = None,
    ) -> Hits:
        """:meth:`retrieve` and :meth:`facets` on one snapshot of the index, with what query
        understanding adds (``plan``: rewrites also match, category boosts, head words).

        With a result cache (:meth:`configure_results`) a repeated ``(query, filters, k,
        plan)`` is answered from memory until the next :meth:`index`, :meth:`upsert` or
        :meth:`delete`. The result is shared with later callers: treat it as read-only.
        """
        check_k(k)
        key = (self._generation, query, filters, k, plan)
        cached = self.results.lookup([key])[0]
        if cached is not None:
            return cached
        searcher = self._fitted().searcher()
        built = self._query(query, filters, plan)
        result = Hits(self._top(searcher, built, k), self._facets(searcher, built))
        self.results.store([key], [result])
        return result

    def matching_keys(
        self,
        query: str,
        filters: Filters | None,
        keys: Sequence[ProductKey],
        plan: QueryPlan | None = None,
    ) -> set[ProductKey]:
        """Which of ``keys`` match ``query`` and ``filters`` (and ``plan``), whether or not they
        were among the top candidates; cached like :meth:`search`."""
        if not keys:
            return set()
        cache_key = (self._generation, "matching", query, filters, tuple(keys), plan)
        cached = self.results.lookup([cache_key])[0]
        if cached is not None:
            return set(cached.candidates.keys)
        searcher = self._fitted().searcher()
        # Which keys match, not how well: under a constant score tantivy skips the query's
        # top-level scoring (0.45 -> 0.28 ms of tantivy per call on logged queries of a
        # 51k-product shop; with no scoring at all it was no faster).
        built = tantivy.Query.const_score_query(
            tantivy.Query.boolean_query(
                [
                    (tantivy.Occur.Must, self._query(query, filters, plan)),
                    (tantivy.Occur.Must, self._key_set(keys)),
                ]
            ),
            1.0,
        )
        found = self._top(searcher, built, len(keys))
        self.results.store([cache_key], [Hits(found)])
        return set(found.keys)

    def facets_of(self, keys: Sequence[ProductKey]) -> Facets:
        """Facet counts of exactly ``keys`` (those indexed)."""
        if not keys:
            return {}
        cache_key = (self._generation, "facets", tuple(keys))
        cached = self.results.lookup([cache_key])[0]
        if cached is not None and cached.facets is not None:
            return cached.facets
        facets = self._facets(self._fitted().searcher(), self._key_set(keys))
        self.results.store([cache_key], [Hits(Candidates.empty(), facets)])
        return facets

    def has_words(self, query: str) -> bool:
        """Whether ``query`` has a word the index can match (else it browses everything)."""
        self._fitted()
        return bool(self.analyzer_.words(query))

    def _key_set(self, keys: Sequence[ProductKey]) -> tantivy.Query:
        terms = [key_term(key) for key in keys]
        if len(terms) <= _FEW_KEYS:
            term = tantivy.Query.term_query
            exact = tantivy.Query.boolean_query(
                [(tantivy.Occur.Should, term(self.schema_, "key", t)) for t in terms]
            )
        else:
            exact = tantivy.Query.term_set_query(self.schema_, "key", terms)
        return tantivy.Query.const_score_query(exact, 0.0)

    def configure_results(
        self, cache_size: int | None = None, observer: CacheObserver | None = None
    ) -> None:
        """Serving-time result cache of :meth:`search`: most results kept (0: off), and who is
        told its hits, misses and evictions. ``None`` leaves a setting as it is.

        The same query and filters cost tantivy's search and facet aggregation (~1 ms on 50k
        products) every time; a shop's head queries repeat, so recent results are kept like a
        search engine's request cache. Only this process's index writes are seen: with several
        serving workers catalog writes are disabled (see :mod:`shopsearch.serve.catalog`).
        """
        if cache_size is not None:
            if cache_size < 0:
                raise InvalidInputError(
                    f"result cache_size={cache_size} is not allowed; use >= 0 (0: no cache)"
                )
            self.results.resize(cache_size)
        if observer is not None:
            self.results.observer = observer

    def configure(self, options: ServingOptions) -> None:
        """Serving settings: the result cache's size and observer."""
        self.configure_results(options.result_cache_size, options.result_cache_observer)

    def result_cache_stats(self) -> CacheStats:
        """Hits, misses and evictions of the :meth:`search` result cache."""
        return self.results.stats()

    def _query(
        self, query: str, filters: Filters | None, plan: QueryPlan | None = None
    ) -> tantivy.Query:
        analyzed = self.analyzer_.words(" ".join(plan.head)) if plan is not None else []
        head = frozenset(word for word, _ in analyzed)
        scored = self._words_query(query, head)
        if analyzed and scored is not None:
            boost = head_boost(self.schema_, analyzed, self.head_boost, self._term_boost())
            scored = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, scored), (tantivy.Occur.Should, boost)]
            )
        if plan is not None and plan.rewrites and scored is not None:
            alternatives = [(tantivy.Occur.Should, scored)]
            for text, weight in plan.rewrites:
                rewrite = self._words_query(text)
                if rewrite is not None:
                    alternatives.append(
                        (tantivy.Occur.Should, tantivy.Query.boost_query(rewrite, weight))
                    )
            scored = tantivy.Query.boolean_query(alternatives)
        if plan is not None and scored is not None:
            scored = boosted(self.schema_, scored, plan.boosts)
        return full_query(scored, filter_queries(self.schema_, filters) + self._restrictions())

    def _term_boost(self) -> TermBoost | None:
        """The boost of each term query (``None`` here: as meant; a shard's scores with the
        catalog's statistics, :mod:`.lexical_shards`)."""
        return None

    def _restrictions(self) -> list[tantivy.Query]:
        """Unscored clauses every search must also match (none here)."""
        return []

    def _words_query(self, text: str, head: frozenset[str] = frozenset()) -> tantivy.Query | None:
        return text_query(
            self.schema_,
            self.analyzer_.words(text),
            self.field_boosts,
            self.fuzzy_fields,
            self.fuzzy_boost,
            self.fuzzy_min_length,
            self.min_match,
            self._neighbours,
            head,
            self._term_boost(),
        )

    def _neighbours(self, field: str, word: str) -> Sequence[str]:
        """The terms of ``field`` within one edit of ``word`` in the index as it is now (found
        by every write and load; found here only if the index changed some other way)."""
        generation, by_field = self._fuzzy_terms
        if generation != self._generation:
            by_field = self._find_fuzzy_terms()
        terms = by_field.get(field)
        return () if terms is None else terms.neighbours(word)

    def _find_fuzzy_terms(self) -> dict[str, FuzzyTerms]:
        """Index each fuzzy field's terms by their neighbours (0.4 s for 40k terms)."""
        current = self._generation  # before the searcher: a write after it finds them again
        searcher = self._fitted().searcher()
        by_field = {
            name: FuzzyTerms(term for term, _ in searcher.terms_with_prefix(name, ""))
            for name in self.fuzzy_fields
        }
        self._fuzzy_terms = (current, by_field)
        return by_field

    def _top(self, searcher: tantivy.Searcher, query: tantivy.Query, k: int) -> Candidates:
        if searcher.num_docs == 0:
            return Candidates.empty()
        result = searcher.search(query, limit=min(k, searcher.num_docs), count=True)
        scores, addresses = zip(*result.hits, strict=True) if result.hits else ((), ())
        rows = cast(list[int], searcher.fast_field_values("row", list(addresses)))
        return Candidates(
            keys=list(map(self.keys_.__getitem__, rows)),
            scores=np.fromiter(scores, np.float32, len(scores)),
            total=result.count,  # type: ignore[attr-defined]  # missing from tantivy's stub
        )

    def _facets(self, searcher: tantivy.Searcher, query: tantivy.Query) -> Facets:
        aggregation = facet_aggregation(self.price_buckets, self.facet_size)
        return read_facets(searcher.aggregate(query, aggregation))

    # -- storage -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the bundle to ``path``; only small files when ``path`` is where it is built."""
        home = self._fitted()
        target = Path(path)
        if home.temporary or target.resolve() != home.root.resolve():
            home.copy_to(target)
        self._write_bundle(target)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Open a bundle written by :meth:`save` (or built in an ``index_dir``), in place."""
        root = Path(path)
        config_path = root / CONFIG_FILE
        if not config_path.exists():
            raise WorkspaceError(f"{config_path} is missing; give a directory written by save()")
        meta = orjson.loads(config_path.read_bytes())
        if meta.get("name") == cls.name and meta.get("format") == 1:
            raise WorkspaceError(
                f"{root} is a lexical index of format 1, built before measurements were "
                f"normalised (6 in. = 6 inch = 6in); this version reads format {FORMAT_VERSION}: "
                "re-index the workspace with 'shopsearch index --workspace W' (or index() again)"
            )
        if meta.get("format") != FORMAT_VERSION or meta.get("name") != cls.name:
            raise WorkspaceError(
                f"{root} holds a {meta.get('name')!r} bundle of format {meta.get('format')}; "
                f"this version reads {cls.name!r} format {FORMAT_VERSION}; rebuild it with index()"
            )
        retriever = cls(root, **meta["config"])
        retriever._check_params()
        home = IndexHome.open(root)
        rows = read_rows(root / ROWS_FILE)
        indexed = home.searcher().num_docs
        if indexed != len(rows):
            raise WorkspaceError(
                f"{root} is inconsistent: its index holds {indexed} products but {ROWS_FILE} "
                f"lists {len(rows)}; rebuild it with index()"
            )
        retriever.home_ = home
        retriever.schema_ = home.index.schema
        retriever.analyzer_ = QueryAnalyzer()
        retriever.rows_ = rows
        retriever.keys_ = {row: key for key, row in rows.items()}
        retriever.next_row_ = max(rows.values(), default=-1) + 1
        retriever._find_fuzzy_terms()
        return retriever

    def _persist(self) -> None:
        if not self.home_.temporary:
            self._write_bundle(self.home_.root)

    def _write_bundle(self, root: Path) -> None:
        write_rows(root / ROWS_FILE, self.rows_)
        write_json(
            root / CONFIG_FILE,
            {"name": self.name, "format": FORMAT_VERSION, "config": self.get_config()},
        )

    # -- checks --------------------------------------------------------------------------------
    def _fitted(self) -> IndexHome:
        if not hasattr(self, "home_"):
            raise NotFittedError(
                "this LexicalRetriever has no index; call index(products) or "
                "LexicalRetriever.load(path) first"
            )
        return self.home_

    def _check_params(self) -> None:
        unknown = sorted(set(self.field_boosts) - set(TEXT_FIELDS))
        unknown += sorted(set(self.fuzzy_fields) - set(TEXT_FIELDS))
        if unknown:
            raise InvalidInputError(
                f"unknown field(s) {', '.join(unknown)}; use fields of {', '.join(TEXT_FIELDS)}"
            )
        if not self.field_boosts:
            raise InvalidInputError(
                f"field_boosts is empty; give a weight to at least one of {', '.join(TEXT_FIELDS)}"
            )
        for field, boost in self.field_boosts.items():
            _check_positive(f"field_boosts[{field!r}]", boost)
        _check_positive("fuzzy_boost", self.fuzzy_boost)
        _check_positive("head_boost", self.head_boost)
        if self.fuzzy_min_length < 1:
            raise InvalidInputError(
                f"fuzzy_min_length={self.fuzzy_min_length} is not allowed; use a length >= 1"
            )
        if not 0.0 <= self.min_match <= 1.0:
            raise InvalidInputError(
                f"min_match={self.min_match} is not allowed; use a fraction in [0, 1]"
            )
        edges = self.price_buckets
        for edge in edges:
            _check_positive("a price bucket edge", edge)
        if any(lo >= hi for lo, hi in itertools.pairwise(edges)):
            raise InvalidInputError(
                f"price_buckets={list(edges)} is not increasing; give increasing bucket edges"
            )
        if self.facet_size < 1:
            raise InvalidInputError(f"facet_size={self.facet_size} is not allowed; use >= 1")


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{name}={value} is not allowed; use a finite number > 0")
