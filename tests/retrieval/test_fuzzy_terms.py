"""The terms within one edit of a word (the lexical source's fuzzy clauses; the same products
and scores as tantivy's FuzzyTermQuery: ``test_lexical.py``)."""

from __future__ import annotations

import itertools
import random

from shopsearch.retrieval.fuzzy_terms import FuzzyTerms, deletions, within_one_edit


def osa_distance(a: str, b: str) -> int:
    """Levenshtein distance with swaps of neighbouring characters costing one (brute force)."""
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        d[i][0] = i
    for j in range(len(b) + 1):
        d[0][j] = j
    for i, j in itertools.product(range(1, len(a) + 1), range(1, len(b) + 1)):
        cost = 0 if a[i - 1] == b[j - 1] else 1
        d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
        if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
            d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[len(a)][len(b)]


def test_within_one_edit_is_the_distance_with_swaps_at_most_one() -> None:
    words = ["".join(w) for n in range(5) for w in itertools.product("abé", repeat=n)]
    for a, b in itertools.product(words, words):
        assert within_one_edit(a, b) == (osa_distance(a, b) <= 1), (a, b)


def test_neighbours_are_every_term_within_one_edit() -> None:
    rng = random.Random(0)
    vocabulary = {"".join(rng.choices("abcde", k=rng.randint(1, 7))) for _ in range(3000)}
    terms = FuzzyTerms(vocabulary)
    for word in [*rng.sample(sorted(vocabulary), 200), "", "zzz", "abcdeabcde"]:
        want = tuple(sorted(t for t in vocabulary if osa_distance(word, t) <= 1))
        assert terms.neighbours(word) == want, word
        assert terms.neighbours(word) == want  # the remembered answer
    assert "abc" in deletions("abxc")
