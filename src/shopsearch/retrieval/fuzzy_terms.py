"""The index terms one edit away from a word: the lexical source's typo-tolerant clauses.

A fuzzy clause matches the products with any term of the field within one edit of the query's
word (an insertion, a deletion, a substitution or a swap of two neighbouring characters; the
Levenshtein distance with transpositions costing one, as tantivy's ``FuzzyTermQuery(distance=1,
transposition_cost_one=True)``), and scores its boost for each. Tantivy finds those terms by
walking the field's term dictionary with a Levenshtein automaton every time a query is
evaluated, and a search evaluates its query three times (the top, the facets, which dense
candidates match): on 50k products the fuzzy clauses were a third of each evaluation.

:class:`FuzzyTerms` finds them once per word instead, from an index of the field's terms by
their one-character deletions (the symmetric-deletion idea of SymSpell, Garbe 2012: two words
one edit apart share a string that each becomes by deleting at most one character), and the
lexical source asks tantivy for the union of those terms with a constant score: the same
products and the same scores (``tests/retrieval/test_lexical.py``; the neighbours themselves:
``tests/retrieval/test_fuzzy_terms.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

#: Most words whose neighbours one :class:`FuzzyTerms` remembers (then it starts afresh).
CACHE_SIZE = 50_000


def deletions(word: str) -> set[str]:
    """``word`` and every string one character shorter that it becomes by deleting one."""
    return {word, *(word[:i] + word[i + 1 :] for i in range(len(word)))}


def within_one_edit(a: str, b: str) -> bool:
    """Whether ``a`` becomes ``b`` by at most one insertion, deletion, substitution or swap of
    two neighbouring characters (characters are code points)."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    first = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    if len(a) < len(b):  # one insertion into a at `first`
        return a[first:] == b[first + 1 :]
    if a[first + 1 :] == b[first + 1 :]:  # one substitution
        return True
    swapped = first + 1 < len(a) and a[first] == b[first + 1] and a[first + 1] == b[first]
    return swapped and a[first + 2 :] == b[first + 2 :]


class FuzzyTerms:
    """The terms of one field, found by their neighbours within one edit.

    Args:
        terms: the field's distinct terms (e.g. ``Searcher.terms_with_prefix(field, "")``).
    """

    def __init__(self, terms: Iterable[str]) -> None:
        self._by_deletion: dict[str, list[str]] = {}
        for term in terms:
            for key in deletions(term):
                self._by_deletion.setdefault(key, []).append(term)
        self._known: dict[str, tuple[str, ...]] = {}

    def neighbours(self, word: str) -> tuple[str, ...]:
        """The terms within one edit of ``word`` (``word`` itself when it is a term), sorted."""
        known = self._known.get(word)
        if known is not None:
            return known
        found: set[str] = set()
        for key in deletions(word):
            found.update(t for t in self._by_deletion.get(key, ()) if within_one_edit(word, t))
        near = tuple(sorted(found))
        if len(self._known) >= CACHE_SIZE:
            self._known = {}
        self._known[word] = near
        return near


__all__ = ["CACHE_SIZE", "FuzzyTerms", "deletions", "within_one_edit"]
