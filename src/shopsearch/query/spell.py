"""Spelling correction learned from the shop: a noisy-channel speller (``spell``).

**Model.** Each word ``x`` of a query, searched in market ``d``, is read as the word ``w`` the
user meant, with score ``S(w) = P_d(w) · P(x | w)`` over ``w = x`` and every vocabulary word
within two edits of ``x`` (found through a SymSpell-style index of deletes).

*Language side* ``P_d(w)``: half the word frequencies of market ``d``'s catalog (titles, brands,
category names), half the words of its logged queries, each query counted ``(requests + clicks)
/ 2`` times (:meth:`QueryData.query_counts <shopsearch.query.data.QueryData.query_counts>`: a
query that leads nowhere counts half), mixed with all markets' frequencies (``market_mix``). The
vocabulary is the catalog's words and the logged words with a weight of at least ``min_count``
that were rarely (in under ``max_typo_share`` of their requests) found to be typos of a catalog
word; a word outside it has the probability of a word seen half a time.

*Error side* ``P(x | w)``, learned from the logs. Pairs (typed, meant) are mined where a typed
word outside the vocabulary is within two edits (and under a third of its length) of a
vocabulary word of the previous or next query of the same session ("toliet seat" then "toilet
seat"), or else of the product clicked after it (the closest word, unless two tie). Each pair's
optimal alignment (restricted Damerau-Levenshtein) gives its edits, from which: ``P(typo |
length of w)`` (pairs per logged word of that length, shrunk toward the share over all lengths),
``P(two edits | typo)``, the share of each edit kind (substitution, insertion, deletion,
transposition), ``P(typed character | meant character)`` for substitutions, and for insertions
and deletions the share that doubles or drops a letter next to an equal one (and the inserted
character otherwise); all add-``smoothing`` smoothed, the position uniform among the kind's
positions. ``P(x | x) = 1 - P(typo | length of x)``.

*Decision.* Only words outside the vocabulary are corrected (non-word errors): a vocabulary word
— any catalog word, brand names included, or a logged word that joined — is never changed. Such
a word is corrected to its best candidate ``w*`` when the posterior odds ``S(w*) / (S(x) + Σ
S(other candidates))`` reach the threshold ``τ``; else it is kept. ``τ`` is chosen on held-out
*training* requests: a model is fitted on the first ``1 - tune_fraction`` of them (by time), the
rest labelled from their own logs (typos: the requests with mined pairs; typed as meant: the
clicked requests without one whose words are all in that model's vocabulary or typed in
``min_count`` earlier requests), and ``τ`` is the highest of those with the most typos corrected
while at most ``max_false_rate`` of the clean requests change. Tokens with digits (model
numbers, sizes) and words longer than ``MAX_WORD`` characters are never changed either; queries
of more than ``MAX_WORDS`` words are left as typed.

**Simplified** from a classic noisy-channel speller (Kernighan-Church-Gale, Brill-Moore): words
are corrected one by one under a unigram language model (no bigram or whole-query context), and
only non-words: a typo that makes another vocabulary word ("pants" typed "pans") stays, as in
Kernighan-Church-Gale, since telling it from a word typed as meant needs context (and the logs
give no labelled real-word typo to set a threshold on); ``P(x | w)`` follows one optimal
alignment instead of summing over all of them, with one character of context for substitutions
and none (but "next to an equal letter") for insertions and deletions; no splitting or joining
of words; candidates only within two edits.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import orjson
import pandas as pd

from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.errors import NotFittedError, WorkspaceError
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis, QueryComponent
from shopsearch.query.data import QueryData
from shopsearch.store.atomic import write_json

#: Most edits between a typed word and a candidate.
MAX_EDITS = 2
#: Characters of a word the deletes index is built on (SymSpell's prefix length).
PREFIX = 7
#: Longer words are never corrected (nor is a query with more than ``MAX_WORDS`` words).
MAX_WORD = 30
MAX_WORDS = 32
#: The edit kinds of the error model.
KINDS = ("sub", "ins", "del", "trans")

#: A word: letters and digits, any script.
TOKEN = re.compile(r"[^\W_]+")
_FILE = "spell.json"
_CACHE = 50_000

#: One edit turning the meant word into the typed one: ``(kind, a, b)`` — ``sub``: meant
#: ``a`` typed as ``b``; ``trans``: meant ``a b`` typed ``b a``; ``ins``: ``a`` inserted,
#: ``del``: ``a`` dropped, with ``b == "="`` when next to an equal letter (doubled, or one of
#: a double dropped), else ``""``.
Op = tuple[str, str, str]


def tokens(text: str) -> list[str]:
    """The lower-cased words of ``text`` (letters and digits, any script)."""
    return TOKEN.findall(text.lower())


def is_word(token: str) -> bool:
    """Whether ``token`` may be corrected or suggested: letters only, not too long."""
    return token.isalpha() and len(token) <= MAX_WORD


def edit_ops(typed: str, meant: str, limit: int = MAX_EDITS) -> list[Op] | None:
    """The edits turning ``meant`` into ``typed`` along one optimal alignment (restricted
    Damerau-Levenshtein: substitution, insertion, deletion, adjacent transposition).

    Returns:
        The edits (empty when equal), or ``None`` when more than ``limit`` are needed.
    """
    n, m = len(meant), len(typed)
    if abs(n - m) > limit:
        return None
    far = limit + 1
    rows = [[min(j, far) for j in range(m + 1)]]
    for i in range(1, n + 1):
        above = rows[i - 1]
        row = [min(i, far)] + [far] * m
        a = meant[i - 1]
        for j in range(max(1, i - limit), min(m, i + limit) + 1):
            b = typed[j - 1]
            cost = above[j - 1] + (a != b)
            cost = min(cost, above[j] + 1, row[j - 1] + 1)
            if i > 1 and j > 1 and a != b and a == typed[j - 2] and meant[i - 2] == b:
                cost = min(cost, rows[i - 2][j - 2] + 1)
            row[j] = min(cost, far)
        rows.append(row)
    if rows[n][m] > limit:
        return None
    ops: list[Op] = []
    i, j = n, m
    while i > 0 or j > 0:
        here = rows[i][j]
        if i and j and meant[i - 1] == typed[j - 1] and here == rows[i - 1][j - 1]:
            i, j = i - 1, j - 1
        elif (
            i > 1
            and j > 1
            and meant[i - 1] == typed[j - 2]
            and meant[i - 2] == typed[j - 1]
            and meant[i - 1] != meant[i - 2]
            and here == rows[i - 2][j - 2] + 1
        ):
            ops.append(("trans", meant[i - 2], meant[i - 1]))
            i, j = i - 2, j - 2
        elif i and j and here == rows[i - 1][j - 1] + 1:
            ops.append(("sub", meant[i - 1], typed[j - 1]))
            i, j = i - 1, j - 1
        elif j and here == rows[i][j - 1] + 1:
            c = typed[j - 1]
            near = (meant[i - 1] if i else "") + (meant[i] if i < n else "")
            ops.append(("ins", c, "=" if c in near else ""))
            j -= 1
        else:
            c = meant[i - 1]
            near = (meant[i - 2] if i > 1 else "") + (meant[i] if i < n else "")
            ops.append(("del", c, "=" if c in near else ""))
            i -= 1
    return ops


def deletes(word: str, depth: int = MAX_EDITS, prefix: int = PREFIX) -> set[str]:
    """``word``'s first ``prefix`` characters with up to ``depth`` of them deleted."""
    key = word[:prefix]
    out = {key}
    frontier = {key}
    for _ in range(depth):
        frontier = {w[:i] + w[i + 1 :] for w in frontier for i in range(len(w))}
        out |= frontier
    return out


@dataclass
class EditModel:
    """``P(typed | meant)`` for words within two edits, from counted edits (the module
    docstring's error side). Every field is a count; probabilities are smoothed from them.

    Attributes:
        typos: mined pairs by the meant word's length (index; the last bucket holds longer).
        words: logged words by length (same buckets).
        edits: pairs by number of edits (index 1 and 2).
        kinds: edits by kind.
        sub: substitutions, ``meant + typed`` character pairs.
        ins: inserted characters of insertions not next to an equal letter.
        doubled: insertions and deletions next to an equal letter, by kind.
        smoothing: the add-``smoothing`` constant of every categorical.
    """

    typos: list[float]
    words: list[float]
    edits: list[float]
    kinds: dict[str, float]
    sub: dict[str, float]
    ins: dict[str, float]
    doubled: dict[str, float]
    smoothing: float = 1.0

    #: Longest word length with its own bucket.
    LENGTHS = 20
    #: Alphabet size assumed by the smoothing (at least).
    ALPHABET = 26
    #: Prior share of mistyped words, worth ``PRIOR_WORDS`` logged words.
    PRIOR = 0.01
    PRIOR_WORDS = 100
    #: Each length's share of mistyped words is shrunk toward all lengths' share as if this
    #: many more words of that length had been logged.
    LENGTH_PRIOR_WORDS = 500

    @classmethod
    def learn(cls, pairs: Iterable[tuple[str, str]], logged: Iterable[str]) -> EditModel:
        """Count the edits of ``(typed, meant)`` pairs against the logged words."""
        size = cls.LENGTHS + 1
        model = cls([0.0] * size, [0.0] * size, [0.0] * (MAX_EDITS + 1), {}, {}, {}, {})
        for word in logged:
            model.words[min(len(word), cls.LENGTHS)] += 1
        for typed, meant in pairs:
            ops = edit_ops(typed, meant)
            if not ops:
                continue
            model.typos[min(len(meant), cls.LENGTHS)] += 1
            model.edits[len(ops)] += 1
            for kind, a, b in ops:
                model.kinds[kind] = model.kinds.get(kind, 0.0) + 1
                if kind == "sub":
                    model.sub[a + b] = model.sub.get(a + b, 0.0) + 1
                elif kind in ("ins", "del") and b:
                    model.doubled[kind] = model.doubled.get(kind, 0.0) + 1
                elif kind == "ins":
                    model.ins[a] = model.ins.get(a, 0.0) + 1
        model._derive()
        return model

    def _derive(self) -> None:
        """Probabilities from the counts (after :meth:`learn` and loading)."""
        k = self.smoothing
        mean = (sum(self.typos) + self.PRIOR * self.PRIOR_WORDS) / (
            sum(self.words) + self.PRIOR_WORDS
        )
        shrink = self.LENGTH_PRIOR_WORDS
        self._typo = [
            (t + shrink * mean) / (w + shrink) for t, w in zip(self.typos, self.words, strict=True)
        ]
        pairs = sum(self.edits)
        self._two = (self.edits[MAX_EDITS] + k * 0.1) / (pairs + k)
        total = sum(self.kinds.values())
        self._kind = {kind: (self.kinds.get(kind, 0.0) + k) / (total + 4 * k) for kind in KINDS}
        self._sub_from: dict[str, float] = defaultdict(float)
        for pair, count in self.sub.items():
            self._sub_from[pair[0]] += count
        letters = {c for pair in self.sub for c in pair} | set(self.ins)
        self._alphabet = max(self.ALPHABET, len(letters))
        self._ins_total = sum(self.ins.values())
        self._double = {
            kind: (self.doubled.get(kind, 0.0) + k) / (self.kinds.get(kind, 0.0) + 2 * k)
            for kind in ("ins", "del")
        }

    def keep(self, word: str) -> float:
        """``P(word | word)``: the chance a word is typed as meant."""
        return 1.0 - self._typo[min(len(word), self.LENGTHS)]

    def prob(self, meant: str, ops: Sequence[Op]) -> float:
        """``P(typed | meant)`` for the typed word that ``ops`` make of ``meant``."""
        if not ops:
            return self.keep(meant)
        n = len(meant)
        p = self._typo[min(n, self.LENGTHS)] * (self._two if len(ops) > 1 else 1 - self._two)
        k = self.smoothing
        for kind, a, b in ops:
            p *= self._kind[kind]
            if kind == "sub":
                p *= (
                    (self.sub.get(a + b, 0.0) + k / self._alphabet)
                    / (self._sub_from.get(a, 0.0) + k)
                    / max(n, 1)
                )
            elif kind == "trans":
                p /= max(n - 1, 1)
            else:
                share = self._double[kind] if b else 1 - self._double[kind]
                positions = n + (kind == "ins")
                p *= share / max(positions, 1)
                if kind == "ins" and not b:
                    p *= (self.ins.get(a, 0.0) + k / self._alphabet) / (self._ins_total + k)
        return p

    def to_json(self) -> dict[str, Any]:
        """The counts, as :meth:`from_json` reads them."""
        return {
            "typos": self.typos,
            "words": self.words,
            "edits": self.edits,
            "kinds": self.kinds,
            "sub": self.sub,
            "ins": self.ins,
            "doubled": self.doubled,
            "smoothing": self.smoothing,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> EditModel:
        """The model :meth:`to_json` wrote."""
        model = cls(**value)
        model._derive()
        return model


@dataclass
class Lexicon:
    """The language side: the vocabulary and its probability per market.

    Attributes:
        words: the vocabulary.
        weights: market → weight of each vocabulary word (catalog and queries, each half of
            the market's mass).
        unknown: the probability of a word outside the vocabulary (one seen half a time).
        market_mix: share of all markets' frequencies mixed into each market's.
    """

    words: list[str]
    weights: dict[str, list[float]]
    unknown: float
    market_mix: float = 0.1

    def __post_init__(self) -> None:
        self.ids = {w: i for i, w in enumerate(self.words)}
        every = np.zeros(len(self.words))
        for values in self.weights.values():
            every += np.asarray(values, dtype=float)
        self._all: np.ndarray = every / max(every.sum(), 1e-12)
        self._probs: dict[str, np.ndarray] = {
            market: (1 - self.market_mix) * np.asarray(v, dtype=float) / max(sum(v), 1e-12)
            + self.market_mix * self._all
            for market, v in self.weights.items()
        }
        self.index: dict[str, list[int]] = defaultdict(list)
        for i, word in enumerate(self.words):
            for key in deletes(word):
                self.index[key].append(i)

    def probs(self, market: str | None) -> np.ndarray:
        """``P_d(w)`` over the vocabulary (all markets' for an unknown or no market)."""
        return self._probs.get(market or "", self._all)

    def candidates(self, word: str) -> list[int]:
        """Ids of vocabulary words that may lie within two edits of ``word``."""
        found: set[int] = set()
        for key in deletes(word):
            found.update(self.index.get(key, ()))
        return sorted(found)


class Speller:
    """A fitted noisy-channel speller: the best correction of a word and its odds.

    Args:
        lexicon: the language side.
        edits: the error side.
    """

    def __init__(self, lexicon: Lexicon, edits: EditModel) -> None:
        self.lexicon = lexicon
        self.edits = edits
        # (market, word) → (best, odds); ("", 0.0) when not corrected (read with one .get:
        # another thread may clear it between two lookups)
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}

    def best(self, word: str, market: str | None) -> tuple[str, float] | None:
        """The most likely meant word for lower-cased ``word`` and its posterior odds against
        every other reading (the word as typed included); ``None`` when it is not corrected:
        a vocabulary word, a word with digits or too long, or no candidate within two edits."""
        key = (market or "", word)
        cached = self._cache.get(key)
        if cached is not None:
            return cached if cached[0] else None
        found = ("", 0.0)
        lex = self.lexicon
        if is_word(word) and word not in lex.ids:
            probs = lex.probs(market)
            stay = lex.unknown * self.edits.keep(word)
            scores: list[tuple[float, str]] = []
            for i in lex.candidates(word):
                other = lex.words[i]
                ops = edit_ops(word, other)
                if ops is not None:
                    scores.append((float(probs[i]) * self.edits.prob(other, ops), other))
            if scores:
                top, chosen = max(scores)
                rest = stay + sum(s for s, _ in scores) - top
                found = (chosen, top / rest if rest > 0 else math.inf)
        if len(self._cache) >= _CACHE:
            self._cache.clear()
        self._cache[key] = found
        return found if found[0] else None

    def correct(
        self, text: str, market: str | None, threshold: float
    ) -> tuple[str, list[tuple[str, str]]]:
        """``text`` with each confidently misspelled word replaced (case kept); the changes."""
        spans = list(TOKEN.finditer(text))
        if len(spans) > MAX_WORDS:
            return text, []
        out: list[str] = []
        changes: list[tuple[str, str]] = []
        last = 0
        for match in spans:
            typed = match.group()
            found = self.best(typed.lower(), market)
            if found is not None and found[1] >= threshold:
                meant = cased(found[0], typed)
                out.append(text[last : match.start()] + meant)
                changes.append((typed, meant))
                last = match.end()
        out.append(text[last:])
        return "".join(out), changes


@QUERY_COMPONENTS.register()
class SpellCorrector(QueryComponent):
    """Noisy-channel spelling correction learned from the catalog and the logs (see the
    module docstring).

    Args:
        tune_fraction: share of the latest training requests held out to choose the threshold.
        max_false_rate: most share of held-out clicked requests without a mined typo that the
            chosen threshold may change.
        min_count: the weight (``(requests + clicks) / 2`` of the queries with it) a logged word
            outside the catalog needs to join the vocabulary.
        max_typo_share: a word outside the catalog mined as a typo in at least this share of
            its requests stays out of the vocabulary.
        default_threshold: the odds threshold when the held-out part has no typo to tune on.
        min_tune_typos: mined typos the held-out part needs for tuning.
    """

    name = "spell"
    order = 20

    def __init__(
        self,
        tune_fraction: float = 0.2,
        max_false_rate: float = 0.005,
        min_count: float = 3.0,
        max_typo_share: float = 0.2,
        default_threshold: float = 2.0,
        min_tune_typos: int = 20,
    ) -> None:
        self.tune_fraction = tune_fraction
        self.max_false_rate = max_false_rate
        self.min_count = min_count
        self.max_typo_share = max_typo_share
        self.default_threshold = default_threshold
        self.min_tune_typos = min_tune_typos

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, data: QueryData) -> Self:
        """Learn the language and error sides from ``data``; choose the threshold on its
        latest requests with a speller fitted on the earlier ones."""
        self.threshold_ = self.default_threshold
        self.tuning_: dict[str, float] = {}
        ids = data.queries["request_id"].tolist()
        cut = len(ids) - round(self.tune_fraction * len(ids))
        if 0 < cut < len(ids):
            early = _subset(data, ids[:cut])
            speller = learn_speller(early, self.min_count, self.max_typo_share)
            vocabulary = set(speller.lexicon.words)
            typed = _requests_per_word(early.queries["query"])
            established = vocabulary | {w for w, n in typed.items() if n >= self.min_count}
            typos, clean = _labelled(_subset(data, ids[cut:]), vocabulary, established)
            if len(typos) >= self.min_tune_typos and len(clean):
                self.threshold_, self.tuning_ = _choose(
                    speller, typos, clean, self.max_false_rate, self.default_threshold
                )
        self.speller_ = learn_speller(data, self.min_count, self.max_typo_share)
        return self

    # -- applying ------------------------------------------------------------------------------
    def correct(self, query: str, domain: str | None = None) -> tuple[str, list[tuple[str, str]]]:
        """``query`` with its confident corrections, and the ``(typed, meant)`` changes.

        Raises:
            NotFittedError: before :meth:`fit` or :meth:`load`.
        """
        if not hasattr(self, "speller_"):
            raise NotFittedError("the spell component is not fitted; call fit(data) first")
        return self.speller_.correct(query, domain, self.threshold_)

    def apply(self, analysis: QueryAnalysis) -> None:
        """Replace ``analysis.text`` by its correction (and note the changes)."""
        corrected, changes = self.correct(analysis.text, analysis.domain)
        if changes:
            analysis.text = corrected
            analysis.correction = corrected
            analysis.notes[self.name] = ", ".join(f"{a}→{b}" for a, b in changes)

    # -- saving --------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """The vocabulary, its counts, the edit counts and the threshold in ``spell.json``."""
        if not hasattr(self, "speller_"):
            raise NotFittedError("the spell component is not fitted; call fit(data) first")
        lexicon = self.speller_.lexicon
        path.mkdir(parents=True, exist_ok=True)
        write_json(
            path / _FILE,
            {
                "threshold": self.threshold_,
                "tuning": self.tuning_,
                "words": lexicon.words,
                "weights": lexicon.weights,
                "unknown": lexicon.unknown,
                "market_mix": lexicon.market_mix,
                "edits": self.speller_.edits.to_json(),
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """The component :meth:`save` wrote to ``path``.

        Raises:
            WorkspaceError: ``path`` holds no saved spell component.
        """
        try:
            saved = orjson.loads((path / _FILE).read_bytes())
            lexicon = Lexicon(
                saved["words"],
                saved["weights"],
                float(saved["unknown"]),
                saved["market_mix"],
            )
            edits = EditModel.from_json(saved["edits"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise WorkspaceError(
                f"{path} holds no saved spell component ({type(exc).__name__}: {exc}); train "
                "it again with 'shopsearch train --stage query --model spell'"
            ) from exc
        component = cls()
        component.threshold_ = float(saved["threshold"])
        component.tuning_ = dict(saved["tuning"])
        component.speller_ = Speller(lexicon, edits)
        return component


def learn_speller(data: QueryData, min_count: float, max_typo_share: float) -> Speller:
    """The language and error sides learned from ``data`` (the module docstring), the
    vocabulary's logged words typed in at least ``min_count`` requests and mined as typos in
    under ``max_typo_share`` of them."""
    by_market, catalog_words = catalog_counts(data.catalog)
    known = set(catalog_words)
    typed = query_word_counts(data)
    requests = _requests_per_word(data.queries["query"])
    mined = Counter(mine_pairs(data, known)["typed"])
    extra = {
        str(w)
        for w, n in typed.groupby("word")["count"].sum().items()
        if w not in known and n >= min_count and mined[str(w)] < max_typo_share * requests[str(w)]
    }
    pairs = mine_pairs(data, known | extra)
    logged = [w for q in data.queries["query"] for w in tokens(str(q)) if is_word(w)]
    edits = EditModel.learn(zip(pairs["typed"], pairs["meant"], strict=True), logged)
    words = sorted(known | extra)
    weights: dict[str, list[float]] = {}
    for market in sorted(set(by_market) | set(typed["domain"])):
        catalog = by_market.get(market, Counter())
        queried = typed[typed["domain"] == market].groupby("word")["count"].sum()
        cat_total = sum(catalog[w] for w in words) or 1.0
        query_total = float(queried[queried.index.isin(words)].sum()) or 1.0
        weights[market] = [
            0.5 * catalog[w] / cat_total + 0.5 * float(queried.get(w, 0.0)) / query_total
            for w in words
        ]
    seen = len(logged) + sum(sum(c.values()) for c in by_market.values())
    return Speller(Lexicon(words, weights, 0.5 / max(seen, 1)), edits)


# -- what the speller learns from ----------------------------------------------------------------
def catalog_counts(catalog: pd.DataFrame) -> tuple[dict[str, Counter[str]], list[str]]:
    """Word counts of the catalog's titles, brands and category names per market, and all its
    correctable words (sorted)."""
    by_market: dict[str, Counter[str]] = defaultdict(Counter)
    for domain, title, brand, category in zip(
        catalog["domain"], catalog["title"], catalog["brand"], catalog["category"], strict=True
    ):
        text = f"{title} {brand} {str(category).replace(CATEGORY_SEPARATOR, ' ')}"
        by_market[str(domain)].update(w for w in tokens(text) if is_word(w))
    every = sorted({w for counts in by_market.values() for w in counts})
    return dict(by_market), every


def query_word_counts(data: QueryData) -> pd.DataFrame:
    """``domain, word, count``: the correctable words of the logged queries, each query
    counted ``(requests + clicks) / 2`` times."""
    counts = data.query_counts()
    rows: dict[tuple[str, str], float] = defaultdict(float)
    for domain, query, requests, clicks in zip(
        counts["domain"], counts["query"], counts["requests"], counts["clicks"], strict=True
    ):
        weight = (float(requests) + float(clicks)) / 2
        for word in tokens(str(query)):
            if is_word(word):
                rows[(str(domain), word)] += weight
    return pd.DataFrame(
        [(d, w, c) for (d, w), c in rows.items()], columns=["domain", "word", "count"]
    )


def mine_pairs(data: QueryData, known: set[str]) -> pd.DataFrame:
    """``request_id, domain, typed, meant``: words typed outside ``known`` read as a known
    word within two edits (and under a third of its length) of the previous or next query of
    the same session, or of a product clicked after the request; the closest one, when only
    one is closest. One pair per (request, typed word)."""
    queries = data.queries
    sessions = queries.groupby("session_id", sort=False)["query"]
    before = sessions.shift(1).fillna("")
    after = sessions.shift(-1).fillna("")
    products: dict[tuple[str, str], set[str]] = {}
    for domain, pid, title, brand, category in zip(
        data.catalog["domain"],
        data.catalog["product_id"],
        data.catalog["title"],
        data.catalog["brand"],
        data.catalog["category"],
        strict=True,
    ):
        text = f"{title} {brand} {str(category).replace(CATEGORY_SEPARATOR, ' ')}"
        products[(str(domain), str(pid))] = set(tokens(text))
    clicked: dict[str, set[str]] = defaultdict(set)
    for request, domain, pid in zip(
        data.outcomes["request_id"],
        data.outcomes["domain"],
        data.outcomes["product_id"],
        strict=True,
    ):
        clicked[str(request)] |= products.get((str(domain), str(pid)), set())
    rows = []
    for request, domain, query, prev, nxt in zip(
        queries["request_id"], queries["domain"], queries["query"], before, after, strict=True
    ):
        unknown = [w for w in dict.fromkeys(tokens(str(query))) if is_word(w) and w not in known]
        if not unknown:
            continue
        nearby = (set(tokens(str(prev))) | set(tokens(str(nxt)))) & known
        landed = clicked.get(str(request), set()) & known
        for word in unknown:
            meant = _closest(word, nearby) or _closest(word, landed)
            if meant is not None:
                rows.append((str(request), str(domain), word, meant))
    return pd.DataFrame(rows, columns=["request_id", "domain", "typed", "meant"])


def _closest(word: str, options: Iterable[str]) -> str | None:
    """The one option fewest edits from ``word`` (at most two, under a third of its
    length); ``None`` when there is none or a tie."""
    best: list[str] = []
    fewest = MAX_EDITS + 1
    for option in options:
        ops = edit_ops(word, option)
        if ops is None or not ops or 3 * len(ops) >= len(option):
            continue
        if len(ops) < fewest:
            best, fewest = [option], len(ops)
        elif len(ops) == fewest:
            best.append(option)
    return best[0] if len(best) == 1 else None


def _subset(data: QueryData, request_ids: Sequence[str]) -> QueryData:
    keep = set(request_ids)
    return QueryData(
        data.catalog,
        data.queries[data.queries["request_id"].isin(keep)].reset_index(drop=True),
        data.outcomes[data.outcomes["request_id"].isin(keep)].reset_index(drop=True),
        data.source,
    )


def _labelled(
    late: QueryData, vocabulary: set[str], established: set[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out requests labelled from their own logs: ``typos`` (``domain, query, meant``:
    the query with its mined pairs applied) and ``clean`` (``domain, query``: clicked
    requests without a mined pair whose words are all ``established`` — a word typed once
    and never mined may still be a typo, so it labels nothing)."""
    pairs = mine_pairs(late, vocabulary)
    fixes: dict[str, dict[str, str]] = defaultdict(dict)
    for request, typed, meant in zip(pairs["request_id"], pairs["typed"], pairs["meant"],
                                     strict=True):  # fmt: skip
        fixes[request][typed] = meant
    queries = late.queries
    mistyped = queries[queries["request_id"].isin(fixes)]
    typos = pd.DataFrame(
        {
            "domain": mistyped["domain"].astype(str),
            "query": mistyped["query"].astype(str),
            "meant": [
                " ".join(fixes[r].get(w, w) for w in tokens(str(q)))
                for r, q in zip(mistyped["request_id"], mistyped["query"], strict=True)
            ],
        }
    )
    acted = set(late.outcomes["request_id"])
    usual = np.array(
        [all(w in established for w in tokens(str(q)) if is_word(w)) for q in queries["query"]],
        dtype=bool,
    )
    clean = queries[queries["request_id"].isin(acted) & ~queries["request_id"].isin(fixes) & usual]
    return typos, clean[["domain", "query"]].astype(str).reset_index(drop=True)


def _requests_per_word(queries: Iterable[object]) -> Counter[str]:
    """In how many of ``queries`` each correctable word appears."""
    return Counter(w for q in queries for w in set(tokens(str(q))) if is_word(w))


def _choose(
    speller: Speller,
    typos: pd.DataFrame,
    clean: pd.DataFrame,
    max_false_rate: float,
    default: float,
) -> tuple[float, dict[str, float]]:
    """The odds threshold with the most held-out typos corrected and at most
    ``max_false_rate`` of the clean requests changed, the highest that does so (``default``
    when no typo can be corrected so)."""

    def readings(domain: str, query: str) -> list[tuple[str, str, float]]:
        out = []
        for word in tokens(query):
            found = speller.best(word, domain)
            out.append((word, *(found or (word, 0.0))))
        return out

    typo_reads = [
        (readings(d, q), m)
        for d, q, m in zip(typos["domain"], typos["query"], typos["meant"], strict=True)
    ]
    clean_odds = sorted(
        (
            max((odds for _, _, odds in readings(d, q)), default=0.0)
            for d, q in zip(clean["domain"], clean["query"], strict=True)
        ),
        reverse=True,
    )
    typo_odds = {o for reads, _ in typo_reads for _, _, o in reads if o > 0}
    allowed = math.floor(max_false_rate * len(clean_odds))
    # thresholds above the (allowed + 1)-th highest clean odds change at most `allowed`
    floor = clean_odds[allowed] if allowed < len(clean_odds) else 0.0
    tau, most = default, 0
    for candidate in sorted(o for o in typo_odds if o > floor):
        right = sum(
            " ".join(m if o >= candidate else w for w, m, o in reads) == meant
            for reads, meant in typo_reads
        )
        if right and right >= most:
            tau, most = candidate, right
    return tau, {
        "threshold": tau,
        "held_out_typos": float(len(typo_reads)),
        "held_out_clean": float(len(clean_odds)),
        "typo_accuracy": most / max(len(typo_reads), 1),
        "false_rate": sum(o >= tau for o in clean_odds) / max(len(clean_odds), 1),
    }


def cased(word: str, like: str) -> str:
    """``word`` in the case of ``like`` (all upper, capitalised or as is)."""
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word.capitalize()
    return word


__all__ = [
    "KINDS",
    "MAX_EDITS",
    "MAX_WORD",
    "MAX_WORDS",
    "PREFIX",
    "TOKEN",
    "EditModel",
    "Lexicon",
    "Op",
    "SpellCorrector",
    "Speller",
    "cased",
    "catalog_counts",
    "deletes",
    "edit_ops",
    "is_word",
    "learn_speller",
    "mine_pairs",
    "query_word_counts",
    "tokens",
]
