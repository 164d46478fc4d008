"""The head of a product title or a query: the words that name the product type.

English noun phrases put the product type last, before any attachment: in "Hampton Bay 52 in.
Ceiling Fan with Light Kit" the product is a ceiling fan, and "light kit" is what comes with it;
in "Universal Light Kit for Ceiling Fans" it is a light kit. The rule, the same for the lexical
index (each product's head, :mod:`shopsearch.retrieval.lexical_schema`) and for query
understanding (the head phrases a catalog uses, :mod:`shopsearch.query.normalize`):

1. lower-case the text and write measurements as one token (:func:`~.units.normalize_units`:
   ``52 in.`` → ``52in``, so the ``in`` of a measurement is not the preposition);
2. the **head segment** is the text before the first attachment: a comma, semicolon, colon,
   bracket, a dash or bar between spaces, or one of the words of :data:`ATTACHMENTS` (``with``,
   ``w/``, ``for``, ``in``, ``by``, ``without``, ``featuring``, ``including``, ``includes``,
   ``from``); ``and`` is no attachment (``Tub and Shower Faucet`` is a faucet);
3. its words are the runs of letters and digits; trailing words with a digit (model numbers,
   sizes) are dropped;
4. the **head phrases** are the last word and the last two words of what remains (both without
   digits): ``fan`` and ``ceiling fan``.
"""

from __future__ import annotations

import re

from shopsearch.text.units import normalize_units

#: Words that start an attachment to the product (what it comes with, is for, is made in ...).
ATTACHMENTS = frozenset(
    {"with", "w/", "for", "in", "by", "without", "featuring", "including", "includes", "from"}
)
#: Longest head phrase, in words.
MAX_HEAD_WORDS = 2

_PUNCTUATION = re.compile(r"[,;:(\[{|]|\s[-\u2013\u2014]\s")
_WORD = re.compile(r"[^\W_]+")
_DIGIT = re.compile(r"[0-9]")


def head_segment(text: str) -> list[str]:
    """The lower-cased words of ``text`` before its first attachment, without trailing words
    that have a digit (rules 1–3 of the module docstring)."""
    segment = _PUNCTUATION.split(normalize_units(text.lower()), maxsplit=1)[0]
    kept: list[str] = []
    for token in segment.split():
        if token in ATTACHMENTS:
            break
        kept.extend(_WORD.findall(token))
    while kept and _DIGIT.search(kept[-1]):
        kept.pop()
    return kept


def head_phrases(text: str) -> list[str]:
    """The head phrases of a title (or category name): its last word and last two words.

    Example:
        >>> head_phrases("Hampton Bay 52 in. Ceiling Fan with Light Kit")
        ['fan', 'ceiling fan']
        >>> head_phrases("Universal Light Kit for Ceiling Fans")
        ['kit', 'light kit']
    """
    words = head_segment(text)
    phrases: list[str] = []
    for n in range(1, MAX_HEAD_WORDS + 1):
        tail = words[-n:]
        if len(tail) < n or any(_DIGIT.search(word) for word in tail):
            break
        phrases.append(" ".join(tail))
    return phrases


__all__ = ["ATTACHMENTS", "MAX_HEAD_WORDS", "head_phrases", "head_segment"]
