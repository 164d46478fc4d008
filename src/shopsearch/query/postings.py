"""Which catalog products contain which words: the signal a query component computes itself to
tell whether a query's own lexical matches are few.

A query component cannot see the search index, so it keeps a compact copy of the one fact it
needs: word → the sorted rows of the products whose title, brand, category or description
contain the word (a CSR structure of two numpy arrays, plus each product's market). From it,
:meth:`WordPostings.count` says how many products of a market contain *every* word of a query:
a query with a mistyped, abbreviated or regional word the catalog never uses gets 0.

Words are lower-cased runs of letters and digits (:func:`words`), and a crude plural fold
(:func:`fold`: ``boots`` → ``boot``, never ``glass`` → ``glas``) stands in for the index's
English stemmer; the count is therefore an estimate of what the lexical index would match, not a
copy of it (the index may also match a word with one typo).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from shopsearch.store.atomic import write_json

_WORD = re.compile(r"[^\W_]+")
#: Distinct words of a query looked up at most (a pasted paragraph stays cheap).
MAX_LOOKUP_WORDS = 32


def words(text: str) -> list[str]:
    """The lower-cased words of ``text`` (runs of letters and digits, any script)."""
    return _WORD.findall(text.lower())


def fold(word: str) -> str:
    """``word`` without a plural ``s`` (``boots`` → ``boot``; ``glass`` and ``bus`` stay)."""
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def catalog_text(catalog: pd.DataFrame) -> pd.Series:
    """Each product's searchable text: title, brand, category and description."""
    return (
        catalog["title"].astype(str)
        + " "
        + catalog["brand"].astype(str)
        + " "
        + catalog["category"].astype(str)
        + " "
        + catalog["description"].astype(str)
    )


@dataclass
class WordPostings:
    """Word → the products containing it, and each product's market (see the module docstring).

    Attributes:
        index: folded word → its number.
        offsets: word number ``w``'s products are ``rows[offsets[w]:offsets[w + 1]]``.
        rows: product rows, sorted within each word.
        domains: the markets, in the order of their numbers.
        product_domain: each product row's market number.
    """

    index: dict[str, int]
    offsets: npt.NDArray[np.int64]
    rows: npt.NDArray[np.int32]
    domains: list[str]
    product_domain: npt.NDArray[np.int32]

    @classmethod
    def from_catalog(cls, catalog: pd.DataFrame) -> WordPostings:
        """The postings of a catalog frame (columns ``domain, title, brand, category,
        description``)."""
        text = catalog_text(catalog)
        postings: dict[str, list[int]] = {}
        for row, product in enumerate(text):
            for word in {fold(w) for w in words(product)}:
                postings.setdefault(word, []).append(row)
        vocabulary = sorted(postings)
        lengths = np.array([len(postings[w]) for w in vocabulary], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = np.fromiter(
            (r for w in vocabulary for r in postings[w]), dtype=np.int32, count=int(offsets[-1])
        )
        domains = sorted(set(catalog["domain"].astype(str)))
        number = {d: i for i, d in enumerate(domains)}
        product_domain = np.array(
            [number[d] for d in catalog["domain"].astype(str)], dtype=np.int32
        )
        return cls({w: i for i, w in enumerate(vocabulary)}, offsets, rows, domains,
                   product_domain)  # fmt: skip

    def count(self, query_words: Sequence[str], domain: str | None = None) -> int:
        """How many products (of ``domain``; ``None``: every market) contain every word of
        ``query_words`` (0 for no words, or a market the catalog does not have)."""
        distinct = list(dict.fromkeys(fold(w) for w in query_words))[:MAX_LOOKUP_WORDS]
        numbers = [self.index.get(w) for w in distinct]
        if not numbers:
            return 0
        lists: list[npt.NDArray[np.int32]] = []
        for n in numbers:
            if n is None:
                return 0
            lists.append(self.rows[self.offsets[n] : self.offsets[n + 1]])
        lists.sort(key=len)
        found = lists[0]
        for other in lists[1:]:
            found = np.intersect1d(found, other, assume_unique=True)
            if not len(found):
                return 0
        if domain is None:
            return len(found)
        if domain not in self.domains:
            return 0
        return int(np.count_nonzero(self.product_domain[found] == self.domains.index(domain)))

    def save(self, path: Path) -> None:
        """Write ``postings.json`` and three ``.npy`` arrays to ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        words_in_order = sorted(self.index, key=self.index.__getitem__)
        write_json(path / "postings.json", {"words": words_in_order, "domains": self.domains})
        np.save(path / "postings_offsets.npy", self.offsets, allow_pickle=False)
        np.save(path / "postings_rows.npy", self.rows, allow_pickle=False)
        np.save(path / "postings_domains.npy", self.product_domain, allow_pickle=False)

    @classmethod
    def load(cls, path: Path) -> WordPostings:
        """Read what :meth:`save` wrote."""
        meta = orjson.loads((path / "postings.json").read_bytes())
        return cls(
            {w: i for i, w in enumerate(meta["words"])},
            np.load(path / "postings_offsets.npy", allow_pickle=False),
            np.load(path / "postings_rows.npy", allow_pickle=False),
            list(meta["domains"]),
            np.load(path / "postings_domains.npy", allow_pickle=False),
        )


__all__ = ["MAX_LOOKUP_WORDS", "WordPostings", "catalog_text", "fold", "words"]
