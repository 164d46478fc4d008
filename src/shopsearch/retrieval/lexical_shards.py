"""The lexical index split by product into shards whose merged answer equals one index's.

A product lives in shard ``shard_of(key, S)`` (a stable hash of its key). A query goes to every
shard; each returns its top ``k``, its match count and its facet counts over *all* its values,
and :func:`merge_hits` keeps the best ``k``, adds the counts and cuts the facets to the size one
index lists. Two things make a shard score like the whole catalog rather than like its part:

* **Document frequencies**: BM25's idf uses how many products hold a term. Each shard knows the
  catalog's frequency of its own terms (:class:`CorpusStats`, summed over the shards when they
  are built) and boosts each term query by ``idf(catalog) / idf(shard)``.
* **Document count and average field lengths**: these enter BM25 through tantivy's own
  statistics, which tantivy-py offers no way to pass in (tantivy itself can, through a
  statistics provider). So a shard also holds *ghost documents*, empty but for a filler word,
  that bring its document count and each field's token count to the catalog's: up to
  :data:`STATS_DOCS` documents exactly (one ghost per product of the other shards), beyond
  that to within half a token (:func:`ghost_plan`). The ghosts never match a search (every
  shard query requires the ``row`` fast field, which they lack). What they cost is measured in
  RESULTS.md.

Scores then equal one index's up to float rounding: tantivy multiplies the boost into the
term's f32 weight, so a term's score may differ from one index's in the last bits (measured: at
most 3e-7 of the score; exact f32 equality is not reachable through boosts alone, as for about
one term in four no f32 boost gives one index's weight). So the merge counts scores within
:data:`TIE_RTOL` as tied and orders ties by catalog position, as one index orders exact ties by
document order (:func:`tie_order`); RESULTS.md checks every logged query of a simulated
workspace against one index. Facet values are counted in full on every shard, so the merged
counts are exact. Shards are built from the catalog, read-only: catalog updates need a rebuild
(sharded serving turns catalog writes off).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import tantivy

from shopsearch.catalog.candidates import Candidates, Facets, Filters, ProductKey, merge_facets
from shopsearch.errors import InvalidInputError
from shopsearch.progress import Progress
from shopsearch.retrieval.base import Capability, Hits, QueryPlan, Retriever, check_k
from shopsearch.retrieval.lexical import DEFAULT_PRICE_BUCKETS, LexicalRetriever
from shopsearch.retrieval.lexical_query import TermBoost, price_bucket_labels
from shopsearch.retrieval.lexical_schema import (
    HEAD_FIELD,
    TEXT_FIELDS,
    ProductText,
    index_analyzer,
    key_term,
    latest_products,
    product_keys,
)

#: The BM25-scored fields whose statistics a shard shares with the catalog.
SCORED_FIELDS = (*TEXT_FIELDS, HEAD_FIELD)
#: The one word of a ghost document (any word would do: ghosts never match a search).
GHOST_WORD = "shopsearchghost"
#: Most filler tokens one ghost document carries per field.
GHOST_TOKENS = 1 << 16
#: Scores this close (relative) are tied in the merge: a shard's score may differ from one
#: index's in the last bits (see :func:`tie_order`).
TIE_RTOL = 1e-6
#: Documents a shard holds at least (products and ghosts) when the catalog has more: enough
#: that its average field lengths are the catalog's to 2.5e-7 (see :func:`ghost_plan`).
STATS_DOCS = 2_000_000
#: A shard lists every facet value, so that the merged counts are exact.
ALL_VALUES = 2**31 - 1


@dataclass
class CorpusStats:
    """What BM25 reads of a set of products: how many, each scored field's token count, and
    each term's document frequency per field."""

    docs: int = 0
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SCORED_FIELDS, 0))
    doc_freq: dict[str, Counter[str]] = field(
        default_factory=lambda: {name: Counter() for name in SCORED_FIELDS}
    )

    @classmethod
    def of(cls, products: Iterable[ProductText]) -> CorpusStats:
        """The statistics of ``products`` as the lexical index analyses them."""
        analyzer = index_analyzer()
        stats = cls()
        for product in products:
            stats.docs += 1
            for name, values in product.scored_texts().items():
                terms = (
                    values
                    if name == HEAD_FIELD
                    else [t for v in values for t in analyzer.analyze(v)]
                )
                stats.tokens[name] += len(terms)
                stats.doc_freq[name].update(set(terms))
        return stats

    @classmethod
    def total(cls, parts: Iterable[CorpusStats]) -> CorpusStats:
        """The statistics of disjoint sets of products together."""
        stats = cls()
        for part in parts:
            stats.docs += part.docs
            for name in SCORED_FIELDS:
                stats.tokens[name] += part.tokens[name]
                stats.doc_freq[name].update(part.doc_freq[name])
        return stats


def idf(doc_freq: int, docs: int) -> float:
    """BM25's inverse document frequency, as tantivy defines it."""
    return math.log1p((docs - doc_freq + 0.5) / (doc_freq + 0.5))


def shard_of(key: ProductKey, shards: int) -> int:
    """The shard of a product: a stable hash of its key (the same on every machine and run)."""
    digest = hashlib.blake2b(key_term(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


def partition(products: pa.Table, shards: int) -> list[pa.Table]:
    """``products`` split into ``shards`` tables by :func:`shard_of` (rows keep their order)."""
    if shards < 1:
        raise InvalidInputError(f"shards={shards} is not allowed; use >= 1")
    owner = np.fromiter((shard_of(key, shards) for key in product_keys(products)), np.int64)
    return [products.take(np.flatnonzero(owner == s)) for s in range(shards)]


def ghost_plan(
    catalog: CorpusStats, own: CorpusStats, stats_docs: int
) -> tuple[int, dict[str, int]]:
    """How many ghost documents a shard holds and how many filler tokens per field they carry.

    Up to ``stats_docs`` documents in all, the ghosts stand for every other product of the
    catalog and bring each field's token count to the catalog's: document count and average
    lengths are then the catalog's to the bit. A larger catalog gets ``stats_docs`` documents
    (or the fewest that keep every field's filler count >= 0) with the tokens that bring each
    average closest to the catalog's: off by at most half a token over ``stats_docs``
    documents, 2.5e-7 of an average of one token at the default; the idf correction then uses
    the shard's own document count.

    Raises:
        InvalidInputError: ``catalog`` does not hold ``own`` (fewer products or tokens).
    """
    if (
        own.docs > catalog.docs
        or any(own.tokens[name] > catalog.tokens[name] for name in SCORED_FIELDS)
        or (own.docs == catalog.docs and own.tokens != catalog.tokens)
    ):
        raise InvalidInputError(
            "the catalog statistics do not include this shard's products; give the sum of "
            "every shard's CorpusStats"
        )
    everyone = catalog.docs - own.docs
    needed = [  # fewest ghosts at which no field's average is above the catalog's
        -(-own.tokens[name] * catalog.docs // catalog.tokens[name]) - own.docs
        for name in SCORED_FIELDS
        if catalog.tokens[name]
    ]
    ghosts = min(everyone, max(stats_docs - own.docs, *needed, 0))
    if ghosts == everyone:
        return ghosts, {name: catalog.tokens[name] - own.tokens[name] for name in SCORED_FIELDS}
    docs = own.docs + ghosts
    return ghosts, {
        name: (2 * catalog.tokens[name] * docs + catalog.docs) // (2 * catalog.docs)
        - own.tokens[name]
        for name in SCORED_FIELDS
    }


def catalog_positions(products: pa.Table) -> dict[ProductKey, int]:
    """Each product's position in ``products``: where its key first came, as one index orders
    a key given twice."""
    positions: dict[ProductKey, int] = {}
    for i, key in enumerate(product_keys(products)):
        positions.setdefault(key, i)
    return positions


class LexicalShard(LexicalRetriever):
    """One shard of a lexical index, scoring like the whole catalog (see the module docstring).

    Built with :meth:`index_shard`; it counts every facet value and is not saved (a shard is
    rebuilt from the catalog).

    Args:
        config: the lexical source's settings (:class:`LexicalRetriever`'s keyword arguments).
        stats_docs: documents (products and ghosts) a shard holds at least, when the catalog
            has more (:func:`ghost_plan`).
    """

    name: ClassVar[str] = "lexical-shard"
    #: field → term → idf(catalog) / idf(shard) of every term of the shard.
    scales_: dict[str, dict[str, float]]

    def __init__(
        self, config: Mapping[str, object] | None = None, stats_docs: int = STATS_DOCS
    ) -> None:
        settings = {**(config or {}), "facet_size": ALL_VALUES}
        super().__init__(None, **settings)  # type: ignore[arg-type]
        self.stats_docs = stats_docs

    def index_shard(
        self, products: pa.Table, catalog: CorpusStats, own: CorpusStats | None = None
    ) -> Self:
        """Index this shard's ``products`` to score with the ``catalog``'s statistics.

        Args:
            products: the shard's products (workspace products schema).
            catalog: the statistics of every shard's products together.
            own: this shard's statistics, if already computed.

        Raises:
            InvalidInputError: ``catalog`` does not hold this shard (fewer products or tokens).
        """
        own = own if own is not None else CorpusStats.of(latest_products(products))
        ghosts, missing = ghost_plan(catalog, own, self.stats_docs)
        self.index(products)
        docs = own.docs + ghosts
        self.scales_ = {
            name: {
                term: idf(catalog.doc_freq[name][term], catalog.docs) / idf(n, docs)
                for term, n in own.doc_freq[name].items()
            }
            for name in SCORED_FIELDS
        }
        self._add_ghosts(ghosts, missing)
        return self

    def _add_ghosts(self, ghosts: int, missing: Mapping[str, int]) -> None:
        carriers = max(math.ceil(n / GHOST_TOKENS) for n in missing.values()) if ghosts else 0
        carriers = min(carriers, ghosts)
        with self.home_.writer() as writer:
            for i in range(ghosts):
                doc = tantivy.Document()
                for name, n in missing.items():
                    count = n // carriers + (i < n % carriers) if i < carriers else 0
                    if not count:
                        continue
                    if name == HEAD_FIELD:  # raw tokenizer: one token per value
                        for _ in range(count):
                            doc.add_text(name, GHOST_WORD)
                    else:
                        doc.add_text(name, " ".join([GHOST_WORD] * count))
                writer.add_document(doc)

    def _term_boost(self) -> TermBoost | None:
        scales = self.scales_
        return lambda name, term, meant: meant * scales[name].get(term, 1.0)

    def _restrictions(self) -> list[tantivy.Query]:
        # ghosts have no row: a product must have one
        return [tantivy.Query.const_score_query(tantivy.Query.exists_query("row"), 0.0)]

    def save(self, path: Path) -> None:
        """Not saved: a shard is rebuilt from the catalog (:meth:`index_shard`).

        Raises:
            InvalidInputError: always.
        """
        raise InvalidInputError(
            "a lexical shard is not saved; build it from the catalog with index_shard()"
        )


class ShardCalls(Protocol):
    """How :class:`ShardedLexical` reaches its shards: ``call(method, args)`` runs
    ``shard.method(*args[s])`` on each shard ``s`` given arguments, in parallel where it can, and
    returns the answers in shard order; a shard that cannot answer raises (never a partial
    answer)."""

    shards: int

    def call(self, method: str, args: Mapping[int, tuple[object, ...]]) -> dict[int, object]:
        """``{s: shard_s.method(*args[s])}``."""
        ...


class LocalShards:
    """The shards in this process, called one after another (the reference and the tests)."""

    def __init__(self, shards: Sequence[LexicalShard]) -> None:
        self.members = list(shards)
        self.shards = len(self.members)

    def call(self, method: str, args: Mapping[int, tuple[object, ...]]) -> dict[int, object]:
        """Each shard's answer in turn."""
        return {s: getattr(self.members[s], method)(*a) for s, a in args.items()}


def build_local_shards(
    products: pa.Table, shards: int, config: Mapping[str, object] | None = None
) -> LocalShards:
    """``products`` split into ``shards`` in-process :class:`LexicalShard` s."""
    parts = partition(products, shards)
    owns = [CorpusStats.of(latest_products(part)) for part in parts]
    catalog = CorpusStats.total(owns)
    return LocalShards(
        [
            LexicalShard(config).index_shard(part, catalog, own)
            for part, own in zip(parts, owns, strict=True)
        ]
    )


class ShardedLexical(Retriever):
    """The lexical source over shards: a query fans out to every shard and the answers merge
    into what one index over the whole catalog answers (see the module docstring).

    Args:
        shards: how the shards are reached (:class:`LocalShards`, or Ray actors in
            :mod:`shopsearch.serve.shards`).
        positions: each product's position in the catalog (ties break by it).
        facet_size: most values listed per ``category`` and ``brand`` facet.
        price_buckets: the price facet's bucket edges (for their order).
    """

    name: ClassVar[str] = "lexical-sharded"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({"facets"})

    def __init__(
        self,
        shards: ShardCalls,
        positions: Mapping[ProductKey, int],
        facet_size: int = 100,
        price_buckets: Sequence[float] = DEFAULT_PRICE_BUCKETS,
    ) -> None:
        self.shards = shards
        self.positions = positions
        self.facet_size = facet_size
        self.price_labels = price_bucket_labels(price_buckets)

    def index(self, products: pa.Table, progress: Progress | None = None) -> Self:
        """Not here: shards are built where they live (:func:`build_local_shards`, or
        :func:`shopsearch.serve.shards.start_shards`).

        Raises:
            InvalidInputError: always.
        """
        raise InvalidInputError("build the shards first; a sharded source searches them")

    def retrieve(self, query: str, k: int = 100, filters: Filters | None = None) -> Candidates:
        """The merged top ``k`` of every shard."""
        return self.search(query, k, filters).candidates

    def search(
        self,
        query: str,
        k: int = 100,
        filters: Filters | None = None,
        plan: QueryPlan | None = None,
    ) -> Hits:
        """Every shard's hits, merged (:func:`merge_hits`)."""
        check_k(k)
        args = (query, k, filters, plan)
        answers = self.shards.call("search", dict.fromkeys(range(self.shards.shards), args))
        parts = [answer for answer in answers.values() if isinstance(answer, Hits)]
        return merge_hits(parts, k, self.positions, self.facet_size, self.price_labels)

    def matching_keys(
        self,
        query: str,
        filters: Filters | None,
        keys: Sequence[ProductKey],
        plan: QueryPlan | None = None,
    ) -> set[ProductKey]:
        """Which of ``keys`` match, each asked of its own shard."""
        found: set[ProductKey] = set()
        by_shard = self._by_shard(keys)
        args = {s: (query, filters, own, plan) for s, own in by_shard.items()}
        for answer in self.shards.call("matching_keys", args).values():
            found |= set(answer)  # type: ignore[call-overload]
        return found

    def facets_of(self, keys: Sequence[ProductKey]) -> Facets:
        """Facet counts of exactly ``keys``, each counted by its own shard."""
        args = {s: (own,) for s, own in self._by_shard(keys).items()}
        counts = [a for a in self.shards.call("facets_of", args).values() if isinstance(a, dict)]
        return merge_counts(counts, self.facet_size, self.price_labels)

    def _by_shard(self, keys: Sequence[ProductKey]) -> dict[int, list[ProductKey]]:
        by_shard: dict[int, list[ProductKey]] = {}
        for key in keys:
            by_shard.setdefault(shard_of(key, self.shards.shards), []).append(key)
        return by_shard

    def save(self, path: Path) -> None:
        """Not saved: the bundle's own lexical source is what is saved.

        Raises:
            InvalidInputError: always.
        """
        raise InvalidInputError("a sharded source is not saved; save the bundle's own index")

    @classmethod
    def load(cls, path: Path) -> Self:
        """Not loaded: shards are built from the catalog.

        Raises:
            InvalidInputError: always.
        """
        raise InvalidInputError("a sharded source is not loaded; build its shards")


def merge_hits(
    parts: Sequence[Hits],
    k: int,
    positions: Mapping[ProductKey, int],
    facet_size: int,
    price_labels: Sequence[str],
) -> Hits:
    """The best ``k`` of the shards' candidates (ties by catalog position), the sum of their
    match counts and their facet counts added up and cut to ``facet_size`` values."""
    keys = [key for part in parts for key in part.candidates.keys]
    scores = np.concatenate([part.candidates.scores for part in parts]) if parts else np.zeros(0)
    order = tie_order(scores, [positions[key] for key in keys])[:k]
    total = sum(part.candidates.total or 0 for part in parts)
    candidates = Candidates(
        keys=[keys[i] for i in order],
        scores=scores[order].astype(np.float32),
        total=total,
    )
    facets = merge_counts([part.facets or {} for part in parts], facet_size, price_labels)
    return Hits(candidates, facets)


def tie_order(scores: npt.NDArray[np.floating[Any]], positions: Sequence[int]) -> list[int]:
    """Indices of ``scores`` best first, scores within :data:`TIE_RTOL` of a run's best counted
    as tied and ordered by catalog ``positions`` (as one index orders exact ties)."""
    values = np.asarray(scores, np.float64)
    by_score = sorted(range(len(values)), key=lambda i: (-values[i], positions[i]))
    order: list[int] = []
    start = 0
    while start < len(by_score):
        top = values[by_score[start]]
        end = start + 1
        while end < len(by_score) and top - values[by_score[end]] <= TIE_RTOL * abs(top):
            end += 1
        order += sorted(by_score[start:end], key=lambda i: positions[i])
        start = end
    return order


def merge_counts(parts: Sequence[Facets], facet_size: int, price_labels: Sequence[str]) -> Facets:
    """Facet counts of disjoint sets added up: values most frequent first (``facet_size`` at
    most), price buckets in their order."""
    merged: Facets = {}
    for part in parts:
        merged = merge_facets(merged, part)
    merged = merge_facets(merged, {}, facet_size)
    if "price" in merged:
        prices = merged["price"]
        merged["price"] = {label: prices[label] for label in price_labels if label in prices}
    return merged


__all__ = [
    "CorpusStats",
    "LexicalShard",
    "LocalShards",
    "ShardCalls",
    "ShardedLexical",
    "build_local_shards",
    "catalog_positions",
    "ghost_plan",
    "idf",
    "latest_products",
    "merge_counts",
    "merge_hits",
    "partition",
    "shard_of",
]
