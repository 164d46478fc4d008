"""Long-tail query slices shared by the evaluation suites.

Two definitions, both computed from the *training* side only:

- :func:`rare_term_queries` (judged query sets such as Home Depot, where test queries never
  occur in training): a test query is long-tail when it contains a term (lower-cased word of
  letters and digits) that occurs in at most ``max_count`` training queries — a rare or
  misspelled word, or a word never seen in training.
- :func:`cold_start_qrels` is another slice: judgments of products no training pair has.
- :func:`rare_queries` (logs, where head queries recur): a test query is long-tail when the
  same query text occurred at most ``max_count`` times among the training requests.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

_TERM = re.compile(r"[a-z0-9]+")
K = TypeVar("K", bound=Hashable)


def query_terms(query: str) -> set[str]:
    """The distinct lower-cased alphanumeric terms of a query."""
    return set(_TERM.findall(query.lower()))


def rare_term_queries(
    train_queries: Iterable[str], test_queries: Sequence[str], max_count: int = 2
) -> list[str]:
    """Test queries with a term found in at most ``max_count`` training queries, in order."""
    frequency: Counter[str] = Counter()
    for query in train_queries:
        frequency.update(query_terms(query))
    return [q for q in test_queries if any(frequency[t] <= max_count for t in query_terms(q))]


def off_vocabulary_queries(vocabulary: Iterable[str], test_queries: Sequence[str]) -> list[str]:
    """Test queries with a word of 3+ letters that the catalog's ``vocabulary`` (lower-cased
    words) lacks: mostly misspellings, in order."""
    known = {w.lower() for w in vocabulary}
    return [
        q
        for q in test_queries
        if any(w.isalpha() and len(w) >= 3 and w not in known for w in query_terms(q))
    ]


def rare_queries(
    train_queries: Iterable[str], test_queries: Sequence[str], max_count: int = 1
) -> list[str]:
    """Test queries whose text occurred at most ``max_count`` times in training, in order."""
    seen = Counter(train_queries)
    return [q for q in test_queries if seen[q] <= max_count]


def cold_start_qrels(
    train_qrels: Mapping[str, Mapping[K, float]],
    test_qrels: Mapping[str, Mapping[K, float]],
    rel_threshold: float,
) -> dict[str, dict[K, float]]:
    """The test judgments of cold-start products: per test query, its relevant products that
    appear in no training pair (judged at any grade); queries with none are left out, so
    recall and MRR measure how a system finds products it never saw in training."""
    seen = {key for judged in train_qrels.values() for key in judged}
    out: dict[str, dict[K, float]] = {}
    for query, judged in test_qrels.items():
        cold = {k: g for k, g in judged.items() if g >= rel_threshold and k not in seen}
        if cold:
            out[query] = cold
    return out
