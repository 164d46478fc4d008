"""The ``normalize`` component: which words of a query name the product type (its head).

In "ceiling fan with light" the user wants a ceiling fan; "light" only says which one. A search
engine that weighs the four words alike ranks exhaust fans with a light and ceiling-fan light kits
first (short titles with most of the words). This component learns the shop's **head phrases**
from its catalog and marks the query's head (:attr:`~.base.QueryAnalysis.head`); the lexical
source then requires the head's words, lets the others only boost, and ranks a product whose own
head is the query's head above one that merely mentions it.

**What is learned (fit).** For every product, the head phrases of its title and of its
category's leaf (:func:`~shopsearch.text.heads.head_phrases`: the last word and the last two
words before "with", "for", "in", a comma ...: "Hampton Bay 52 in. Ceiling Fan with Light Kit" →
``fan``, ``ceiling fan``; "Universal Light Kit for Ceiling Fans" → ``kit``, ``light kit``),
leaving out phrases with a word of the product's own brand ("Galdex Wardrobe" heads
``wardrobe``, not ``galdex wardrobe``). A phrase is a head phrase of the shop when at least
``min_products`` products have it as their head and, of the products whose title contains it
anywhere, at least ``min_share`` have it as their head: "ceiling fan" is one (most titles that
say it are ceiling fans), "ceiling" is not (always a modifier). Words are compared lower-cased
with plurals folded (``fans`` = ``fan``). The catalog's brand names are kept too.

**Checked against the log (only when confident).** A head's words must match, so a head users
do not mean literally loses results: "couch" in a shop that calls its couches sofas, "soft
mattress" in one whose soft mattresses do not say so. Of the products clicked after the logged
queries whose head a phrase is, at least ``min_coverage`` (80%) must contain all its words
(title, brand, category, description; plurals folded), or the phrase is dropped once it has
``min_evidence`` (5) such clicks; those queries then fall back to their next phrase
("mattress"), which is checked in turn. A phrase nobody searched for stands on the catalog's
evidence alone.

**What is marked (apply).** The query's head segment (its words before an attachment word such
as "with", "for", "in", trailing words with digits dropped:
:func:`~shopsearch.text.heads.head_segment`) is scanned from its end for a head phrase, two words
before one: English puts the product type last, so in "ceiling fan light kit" the product is a
light kit. Words with digits and a brand's full name are never a head, and a query whose words
all belong to brand names (numbers aside: "hampton bay", "sonos 5") gets none. The first phrase
found is the head; a query without one is left as it is. The query text is not changed:
measurements are normalised by the lexical index itself, for documents and queries alike
(:mod:`shopsearch.text.units`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

import orjson

from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis, QueryComponent
from shopsearch.query.data import QueryData
from shopsearch.store.atomic import write_json
from shopsearch.text.heads import MAX_HEAD_WORDS, head_phrases, head_segment

_FILE = "heads.json"
_FORMAT = 1
_WORD = re.compile(r"[^\W_]+")
_DIGIT = re.compile(r"[0-9]")


def fold(word: str) -> str:
    """A word lower-cased with its English plural folded (``fans`` → ``fan``, ``boxes`` →
    ``box``, ``batteries`` → ``battery``; ``glass`` and ``bus`` stay)."""
    word = word.lower()
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses")):
        return word[:-2]
    return word[:-1]


def phrase_key(words: list[str]) -> str:
    """The key of a phrase: its words folded (:func:`fold`), joined by a space."""
    return " ".join(fold(w) for w in words)


@QUERY_COMPONENTS.register()
class HeadNormalizer(QueryComponent):
    """Mark the head product type of a query, learned from the catalog (see the module
    docstring).

    Args:
        min_products: fewest products that must have a phrase as their head.
        min_share: least share of the products containing a phrase that have it as their head.
        min_evidence: fewest logged clicks after queries with a phrase that can drop it.
        min_coverage: least share of those clicked products that must have all its words.
    """

    name: ClassVar[str] = "normalize"
    order: ClassVar[int] = 10
    #: Trained only when named: requiring the head cost NDCG@10 on Home Depot (validation
    #: queries held out of the training judgments: 0.988x of spell alone) and was neutral on
    #: the simulator (RESULTS.md, "Query understanding").
    default: ClassVar[bool] = False

    #: head phrase key → how many products have it as their head.
    heads_: dict[str, int]
    #: lower-cased brand names.
    brands_: frozenset[str]
    _brand_words: frozenset[str]

    def __init__(
        self,
        min_products: int = 2,
        min_share: float = 0.5,
        min_evidence: int = 5,
        min_coverage: float = 0.8,
    ) -> None:
        if min_products < 1 or min_evidence < 1:
            raise InvalidInputError(
                f"min_products={min_products}, min_evidence={min_evidence}: use integers >= 1"
            )
        for name, value in (("min_share", min_share), ("min_coverage", min_coverage)):
            if not 0.0 < value <= 1.0:
                raise InvalidInputError(f"{name}={value}: use 0 < {name} <= 1")
        self.min_products = min_products
        self.min_share = min_share
        self.min_evidence = min_evidence
        self.min_coverage = min_coverage

    def fit(self, data: QueryData) -> Self:
        """Learn the catalog's head phrases and brands, and drop the phrases the log says
        users do not mean literally."""
        catalog = data.catalog
        self.brands_ = frozenset(
            " ".join(_WORD.findall(str(b).lower())) for b in catalog["brand"] if str(b).strip()
        )
        self._brand_words = frozenset(w for b in self.brands_ for w in b.split())
        headed: Counter[str] = Counter()
        for title, brand, category in zip(
            catalog["title"], catalog["brand"], catalog["category"], strict=True
        ):
            own = set(_WORD.findall(str(brand).lower()))
            leaf = str(category).split(CATEGORY_SEPARATOR)[-1] if category else ""
            phrases = [*head_phrases(str(title)), *head_phrases(leaf)]
            headed.update({phrase_key(p.split()) for p in phrases if own.isdisjoint(p.split())})
        candidates = {key for key, n in headed.items() if n >= self.min_products}
        contained: Counter[str] = Counter()
        for title in catalog["title"]:
            words = [fold(w) for w in _WORD.findall(str(title).lower())]
            grams = {
                " ".join(words[i : i + n])
                for n in range(1, MAX_HEAD_WORDS + 1)
                for i in range(len(words) - n + 1)
            }
            contained.update(grams & candidates)
        self.heads_ = {
            key: headed[key]
            for key in sorted(candidates)
            # a leaf name not in any title counts as always a head
            if headed[key] >= self.min_share * max(contained[key], headed[key])
        }
        self._drop_unmeant(data)
        return self

    def _drop_unmeant(self, data: QueryData) -> None:
        """Drop the head phrases users who typed them did not mean literally: of the products
        clicked after the queries whose head the phrase is (at least ``min_evidence``), under
        ``min_coverage`` have all its words (title, brand, category, description; plurals
        folded). "couch" is such a phrase in a shop that calls couches sofas, "soft mattress"
        in one whose soft mattresses do not say so. A query whose head is dropped falls back to
        its next phrase ("mattress"), which is checked in turn."""
        clicked = data.outcomes[data.outcomes["stage"] >= 1]
        catalog = data.catalog.set_index(["domain", "product_id"])
        text = (
            catalog["title"].astype(str) + " " + catalog["brand"].astype(str) + " "
            + catalog["category"].astype(str) + " " + catalog["description"].astype(str)
        ).to_dict()  # fmt: skip
        logged: list[tuple[list[str], list[frozenset[str]]]] = []
        for query, group in clicked.groupby("query", sort=False):
            keys = zip(group["domain"], group["product_id"], strict=True)
            products = [
                frozenset(fold(w) for w in _WORD.findall(str(text.get(key, "")).lower()))
                for key in keys
            ]
            logged.append((head_segment(str(query)), products))
        while True:
            covered: Counter[str] = Counter()
            seen: Counter[str] = Counter()
            for segment, products in logged:
                first = next(self._scan(segment), None)
                if first is None:
                    continue
                phrase = phrase_key(first)
                seen[phrase] += len(products)
                covered[phrase] += sum(all(w in p for w in phrase.split()) for p in products)
            unmeant = [
                phrase
                for phrase, n in seen.items()
                if n >= self.min_evidence and covered[phrase] < self.min_coverage * n
            ]
            if not unmeant:
                return
            for phrase in unmeant:
                del self.heads_[phrase]

    def _scan(self, words: list[str]) -> Iterator[list[str]]:
        """The head phrases among ``words`` (a head segment), in the order they are tried: from
        its end, two words before one; words with digits and brand names skipped."""
        for end in range(len(words), 0, -1):
            for n in range(min(MAX_HEAD_WORDS, end), 0, -1):
                phrase = words[end - n : end]
                if any(_DIGIT.search(w) for w in phrase) or " ".join(phrase) in self.brands_:
                    continue
                if phrase_key(phrase) in self.heads_:
                    yield phrase

    def head(self, text: str) -> tuple[str, ...]:
        """The head words of ``text`` (empty when it has none or is only brand words)."""
        self._fitted()
        named = [w for w in _WORD.findall(text.lower()) if not _DIGIT.search(w)]
        if all(w in self._brand_words for w in named):
            return ()  # no words, or only a brand's (and numbers): nothing to require
        return tuple(next(self._scan(head_segment(text)), ()))

    def apply(self, analysis: QueryAnalysis) -> None:
        """Set ``analysis.head`` when the query names a head phrase of the shop."""
        head = self.head(analysis.text)
        if head:
            analysis.head = head
            count = self.heads_[phrase_key(list(head))]
            analysis.notes[self.name] = f"head: {' '.join(head)} ({count} products)"

    def save(self, path: Path) -> None:
        """``heads.json``: the parameters, the head phrases with their counts, the brands."""
        heads, brands = self._fitted()
        path.mkdir(parents=True, exist_ok=True)
        write_json(
            path / _FILE,
            {
                "format": _FORMAT,
                "min_products": self.min_products,
                "min_share": self.min_share,
                "min_evidence": self.min_evidence,
                "min_coverage": self.min_coverage,
                "heads": heads,
                "brands": sorted(brands),
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read what :meth:`save` wrote.

        Raises:
            WorkspaceError: a missing or unreadable file, or another format.
        """
        try:
            saved: dict[str, Any] = orjson.loads((path / _FILE).read_bytes())
            if saved.get("format") != _FORMAT:
                raise WorkspaceError(
                    f"{path / _FILE} is format {saved.get('format')}, not {_FORMAT}; train the "
                    "query components again ('shopsearch train --stage query')"
                )
            component = cls(
                int(saved["min_products"]),
                float(saved["min_share"]),
                int(saved["min_evidence"]),
                float(saved["min_coverage"]),
            )
            component.heads_ = {str(k): int(v) for k, v in saved["heads"].items()}
            component.brands_ = frozenset(str(b) for b in saved["brands"])
            component._brand_words = frozenset(w for b in component.brands_ for w in b.split())
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise WorkspaceError(
                f"{path} holds no normalize component ({type(exc).__name__}: {exc}); train the "
                "query components again ('shopsearch train --stage query')"
            ) from exc
        return component

    def _fitted(self) -> tuple[dict[str, int], frozenset[str]]:
        if not hasattr(self, "heads_"):
            raise NotFittedError("this normalize component is not fitted; call fit(data) first")
        return self.heads_, self.brands_


__all__ = ["HeadNormalizer", "fold", "phrase_key"]
