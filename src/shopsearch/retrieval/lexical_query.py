"""Query building for the lexical index, with tantivy's Query API (never its query parser).

A user's text is analyzed like the documents (:class:`~.lexical_schema.QueryAnalyzer`) and
each distinct word becomes one clause::

    word clause = SHOULD over fields f:  term(f, stem) ^ boost_f
                                         fuzzy(f, stem, distance 1) ^ (fuzzy_boost * boost_f)

Fuzzy sub-queries are only added for alphabetic words that have ``fuzzy_min_length`` or more
letters both as typed and as stemmed (the stem is what is matched: ``cases`` → ``case`` stays
exact, or it would also find ``cake``), and only on ``fuzzy_fields``. tantivy scores a fuzzy
match with a constant (its boost), and an exact term also matches its own fuzzy query, so a
product with the exact word scores its BM25 on top of what a product with only a near spelling
gets: exact matches always rank above fuzzy ones, all else equal. The word clauses are OR-ed
with a minimum number that must match, and filters are MUST clauses with a constant score of 0,
so they restrict without changing scores.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import tantivy
from tantivy import Occur, Query

from shopsearch.catalog.candidates import Facets, Filters
from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.retrieval.lexical_schema import (
    HEAD_FIELD,
    PATH_SEPARATOR,
    category_term,
    head_term,
)

#: Words after this many distinct ones are ignored (keeps pasted paragraphs fast).
MAX_QUERY_WORDS = 32
#: ``(field, term, boost) -> boost`` given to a term query (see :func:`text_query`).
TermBoost = Callable[[str, str, float], float]
#: ``(field, word) -> terms``: the field's terms within one edit of the word
#: (:class:`~shopsearch.retrieval.fuzzy_terms.FuzzyTerms`).
Neighbours = Callable[[str, str], Sequence[str]]


def text_query(
    schema: tantivy.Schema,
    words: Sequence[tuple[str, str]],
    field_boosts: Mapping[str, float],
    fuzzy_fields: Sequence[str],
    fuzzy_boost: float,
    fuzzy_min_length: int,
    min_match: float,
    neighbours: Neighbours,
    head: frozenset[str] = frozenset(),
    term_boost: TermBoost | None = None,
) -> Query | None:
    """The scored part of a query for analyzed ``(word, stem)`` pairs; ``None`` if no words.

    A long enough alphabetic word also matches, in ``fuzzy_fields``, the terms one edit away
    (``neighbours``), scoring ``fuzzy_boost`` times the field's boost.

    Words whose folded form is in ``head`` must match (the product type); the others then only
    raise the score. Without a head word among the words, ``min_match`` applies as usual.
    ``term_boost(field, term, boost)`` is the boost given to a term query meant to have
    ``boost`` (a shard's, to score with the whole catalog's statistics; ``None``: ``boost``).
    """
    clauses: list[tuple[Occur, Query]] = []
    seen: set[str] = set()
    for word, stem in words:
        if stem in seen:
            continue
        seen.add(stem)
        fuzzy = word.isalpha() and min(len(word), len(stem)) >= fuzzy_min_length
        fields = fuzzy_fields if fuzzy else ()
        occur = Occur.Must if word in head else Occur.Should
        word_query = _word_query(
            schema, stem, field_boosts, fields, fuzzy_boost, neighbours, term_boost
        )
        clauses.append((occur, word_query))
        if len(clauses) == MAX_QUERY_WORDS:
            break
    if not clauses:
        return None
    if any(occur == Occur.Must for occur, _ in clauses):
        return Query.boolean_query(clauses)
    required = max(1, math.ceil(min_match * len(clauses)))
    return Query.boolean_query(clauses, minimum_number_should_match=required)


def boosted(
    schema: tantivy.Schema, match: Query, boosts: Sequence[tuple[tuple[str, ...], float]]
) -> Query:
    """``match``, with each product in a boosted category scoring its weight more."""
    if not boosts:
        return match
    extra = [
        (
            Occur.Should,
            Query.boost_query(
                Query.const_score_query(
                    Query.term_query(schema, "category_path", category_term(path)), 1.0
                ),
                weight,
            ),
        )
        for path, weight in boosts
    ]
    return Query.boolean_query([(Occur.Must, match), *extra])


def head_boost(
    schema: tantivy.Schema,
    head: Sequence[tuple[str, str]],
    weight: float,
    term_boost: TermBoost | None = None,
) -> Query:
    """A query matching the products whose head phrase is ``head`` (its analyzed ``(word,
    stem)`` pairs, in order), scored BM25 on the ``head`` field times ``weight``."""
    term = head_term(stem for _, stem in head)
    boost = weight if term_boost is None else term_boost(HEAD_FIELD, term, weight)
    return Query.boost_query(Query.term_query(schema, HEAD_FIELD, term), boost)


def _word_query(
    schema: tantivy.Schema,
    stem: str,
    field_boosts: Mapping[str, float],
    fuzzy_fields: Sequence[str],
    fuzzy_boost: float,
    neighbours: Neighbours,
    term_boost: TermBoost | None,
) -> Query:
    clauses = [
        (
            Occur.Should,
            Query.boost_query(
                Query.term_query(schema, field, stem),
                boost if term_boost is None else term_boost(field, stem, boost),
            ),
        )
        for field, boost in field_boosts.items()
    ]
    for field in fuzzy_fields:
        near = neighbours(field, stem)
        if near:  # as tantivy's FuzzyTermQuery: a constant score for any of the terms
            union = Query.boolean_query(
                [(Occur.Should, Query.term_query(schema, field, t)) for t in near]
            )
            score = fuzzy_boost * field_boosts.get(field, 1.0)
            clauses.append((Occur.Should, Query.const_score_query(union, score)))
    return Query.boolean_query(clauses)


def filter_queries(schema: tantivy.Schema, filters: Filters | None) -> list[Query]:
    """One unscored query per restriction in ``filters``; every one must match."""
    if filters is None:
        return []
    queries = []
    if filters.domain is not None:
        queries.append(Query.term_query(schema, "domain", filters.domain))
    if filters.category:
        queries.append(Query.term_query(schema, "category_path", category_term(filters.category)))
    if filters.brand is not None:
        queries.append(Query.term_query(schema, "brand_key", filters.brand.lower()))
    if filters.price_min is not None or filters.price_max is not None:
        queries.append(
            Query.range_query(
                schema, "price", tantivy.FieldType.Float, filters.price_min, filters.price_max
            )
        )
    if filters.in_stock is not None:
        queries.append(Query.term_query(schema, "in_stock", filters.in_stock))
    return [Query.const_score_query(q, 0.0) for q in queries]


def full_query(scored: Query | None, filters: list[Query]) -> Query:
    """``scored`` AND every filter; without ``scored``, every product passing the filters."""
    base = scored if scored is not None else Query.const_score_query(Query.all_query(), 0.0)
    if not filters:
        return base
    return Query.boolean_query([(Occur.Must, q) for q in [base, *filters]])


def price_bucket_labels(edges: Sequence[float]) -> list[str]:
    """Labels of the price buckets cut at ``edges``: ``0-25``, ``25-50``, ..., ``1000+``."""
    bounds = [0.0, *edges]
    labels = [f"{lo:g}-{hi:g}" for lo, hi in itertools.pairwise(bounds)]
    return [*labels, f"{bounds[-1]:g}+"]


def facet_aggregation(edges: Sequence[float], size: int) -> dict[str, object]:
    """The tantivy aggregation that counts brands, category prefixes and price buckets.

    ``segment_size`` is unbounded so counts are exact across segments, not estimates.
    """
    labels = price_bucket_labels(edges)
    ranges: list[dict[str, object]] = []
    bounds: list[float | None] = [None, *edges, None]
    for label, lo, hi in zip(labels, bounds, bounds[1:], strict=False):
        bucket: dict[str, object] = {"key": label}
        if lo is not None:
            bucket["from"] = lo
        if hi is not None:
            bucket["to"] = hi
        ranges.append(bucket)
    terms = {"size": size, "segment_size": 2**31 - 1}
    return {
        "brand": {"terms": {"field": "brand_name", **terms}},
        "category": {"terms": {"field": "category_path", **terms}},
        "price": {"range": {"field": "price", "ranges": ranges}},
    }


def read_facets(result: Mapping[str, Any]) -> Facets:
    """Facet counts from the result of :func:`facet_aggregation`, most frequent first.

    Values with a count of 0 are left out; category paths are joined with ``" > "``.
    """
    facets: Facets = {}
    for name in ("category", "brand", "price"):
        counts = {
            str(bucket["key"]).replace(PATH_SEPARATOR, CATEGORY_SEPARATOR): int(bucket["doc_count"])
            for bucket in result[name]["buckets"]
            if int(bucket["doc_count"]) > 0
        }
        if name != "price":
            counts = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        facets[name] = counts
    return facets
