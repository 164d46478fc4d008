"""The ``suggest`` component: query autocompletion learned from the shop's search log.

**What is learned (fit).** Every logged query of a market, written one way (:func:`query_key`:
Unicode NFKC, lower-case, spaces collapsed), with what its searches led to: how many were
followed by a click (``clicks``) and how many by a purchase (``purchases``). A query is
suggested in its market only if at least ``min_clicks`` of its searches led to a click (a query
that found nothing useful is never suggested), ranked by how many successes its searches are
expected to bring: ``searches × rate``, where the rate is its ``(clicks + purchase_weight ×
purchases) / searches`` shrunk towards the market's mean by ``prior_searches`` searches' worth
of it (``(clicks + w × purchases + prior × mean) / (searches + prior)``), so one lucky search
does not outrank a query that works day after day. With ``prior_searches=0`` the score is
``clicks + purchase_weight × purchases``. With ``weighting="frequency"`` (the classic "most
popular completion", the baseline of ``shopsearch eval query --dataset suggest-sim``) a query
is ranked by how often it was typed.

**How it is stored.** Per market, the suggestible queries in sorted order with their scores: the
completions of a prefix are one contiguous range of that array (two binary searches). For every
prefix with more than ``HEAVY_RANGE`` completions (the short ones: ``c``, ``co`` ...) the best
``max_size`` are precomputed, so answering never scans more than ``HEAVY_RANGE`` scores.

**How a prefix is completed** (:meth:`QuerySuggester.complete`): the typed prefix is written as
the queries were (a trailing space is kept: ``tv `` completes to ``tv stand``, not ``tvs``); its
completions come first, in score order. When they are fewer than asked for, a prefix of
``typo_min_chars`` (4) or more characters is also completed as if it had one typo (a character
left out, added, replaced, or two neighbours swapped; never the first character, and not at its
end, where a prefix is still being typed); those completions follow the exact ones, in score
order. The variants are found by walking the sorted array, so only prefixes that have
completions are tried. Markets are separate; ``domain=None`` merges them (scores added).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis, QueryComponent
from shopsearch.query.data import QueryData
from shopsearch.store.atomic import write_json

#: Most suggestions one call returns.
MAX_SUGGESTIONS = 20
#: Prefixes with more completions than this have their best ones precomputed.
HEAVY_RANGE = 256
#: Logged queries longer than this (characters, after :func:`query_key`) are not suggested, and
#: longer prefixes complete to nothing.
MAX_KEY_CHARS = 100
_FILE = "suggest.json"
_FORMAT = 1
_END = "\U0010ffff"  # sorts after every character: prefix + _END bounds the prefix's range

Weighting = Literal["outcomes", "frequency"]


def query_key(text: str) -> str:
    """A query as the suggester stores it: NFKC, lower-case, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def prefix_key(text: str) -> str:
    """A typed prefix as :func:`query_key` writes it, keeping one trailing space (a finished
    word)."""
    key = query_key(text)
    return key + " " if key and text[-1:].isspace() else key


@dataclass(frozen=True)
class Suggestion:
    """One completion.

    Attributes:
        query: the completed query.
        score: its score (clicks and purchases, or searches).
        typo: whether it completes the prefix read with one typo (such completions follow the
            exact ones).
    """

    query: str
    score: float
    typo: bool


class _Market:
    """The suggestible queries of one market: sorted keys, scores, precomputed heavy ranges."""

    def __init__(
        self,
        queries: list[str],
        scores: npt.NDArray[np.float64],
        heavy: dict[str, list[int]],
    ) -> None:
        self.queries = queries
        self.scores = scores
        self.heavy = heavy

    @classmethod
    def build(cls, scored: dict[str, float], keep: int) -> _Market:
        queries = sorted(scored)
        scores = np.array([scored[q] for q in queries], dtype=np.float64)
        return cls(queries, scores, _heavy_prefixes(queries, scores, keep))

    def span(self, prefix: str, lo: int = 0, hi: int | None = None) -> tuple[int, int]:
        """The range of queries starting with ``prefix`` (within ``lo:hi``)."""
        end = len(self.queries) if hi is None else hi
        first = bisect.bisect_left(self.queries, prefix, lo, end)
        return first, bisect.bisect_left(self.queries, prefix + _END, first, end)

    def best(self, prefix: str, k: int) -> list[int]:
        """Indices of the ``k`` best-scored completions of ``prefix``, best first."""
        top = self.heavy.get(prefix)
        if top is not None:
            return top[:k]
        lo, hi = self.span(prefix)
        if hi - lo <= k:
            order = np.argsort(-self.scores[lo:hi], kind="stable")
        else:
            part = np.argpartition(-self.scores[lo:hi], k - 1)[:k]
            order = part[np.argsort(-self.scores[lo:hi][part], kind="stable")]
        return [lo + int(i) for i in order]

    def next_characters(self, prefix: str) -> Iterator[str]:
        """Each character that follows ``prefix`` in some query, once."""
        lo, hi = self.span(prefix)
        depth = len(prefix)
        while lo < hi:
            query = self.queries[lo]
            if len(query) == depth:
                lo += 1
                continue
            char = query[depth]
            yield char
            lo = bisect.bisect_left(self.queries, prefix + char + _END, lo, hi)

    def has(self, prefix: str, lo: int = 0, hi: int | None = None) -> bool:
        """Whether some query (within ``lo:hi``) starts with ``prefix``."""
        end = len(self.queries) if hi is None else hi
        first = bisect.bisect_left(self.queries, prefix, lo, end)
        return first < end and self.queries[first].startswith(prefix)

    def typo_variants(self, prefix: str) -> set[str]:
        """Prefixes one edit from ``prefix`` (not on its first or last character, except a
        replaced last character) that some query starts with."""
        found: set[str] = set()
        for i in range(1, len(prefix)):
            head, rest = prefix[:i], prefix[i:]
            lo, hi = self.span(head)
            if lo == hi:
                break  # no query starts with prefix[:i]: no variant edited further on exists
            chars = list(self.next_characters(head))
            candidates = [head + char + rest for char in chars]  # added
            candidates += [head + char + rest[1:] for char in chars]  # replaced
            if len(rest) > 1:
                candidates += [head + rest[1:], head + rest[1] + rest[0] + rest[2:]]
            found.update(v for v in candidates if v != prefix and self.has(v, lo, hi))
        return found


def _heavy_prefixes(
    queries: Sequence[str], scores: npt.NDArray[np.float64], keep: int
) -> dict[str, list[int]]:
    """The best ``keep`` completions of every prefix with more than :data:`HEAVY_RANGE`."""
    heavy: dict[str, list[int]] = {}
    length = 1
    while True:
        grew = False
        start = 0
        for prefix, group in itertools.groupby(q[:length] for q in queries):
            size = sum(1 for _ in group)
            lo, hi = start, start + size
            start = hi
            if size <= HEAVY_RANGE or len(prefix) < length:
                continue
            grew = True
            part = np.argpartition(-scores[lo:hi], keep - 1)[:keep]
            order = part[np.argsort(-scores[lo:hi][part], kind="stable")]
            heavy[prefix] = [lo + int(i) for i in order]
        if not grew:
            return heavy
        length += 1


@QUERY_COMPONENTS.register()
class QuerySuggester(QueryComponent):
    """Prefix completions learned from the log, ranked by what the completed queries led to
    (see the module docstring).

    Args:
        weighting: ``"outcomes"`` (clicks + ``purchase_weight`` × purchases) or
            ``"frequency"`` (searches).
        purchase_weight: what a search ending in a purchase adds beyond its click.
        prior_searches: searches' worth of the market's mean outcome each query starts with
            (shrinks the outcome rate of rarely typed queries towards the mean).
        min_clicks: fewest searches followed by a click for a query to be suggested.
        typo_min_chars: shortest prefix also completed as if it had one typo (0: never).
        max_size: most suggestions asked for at once (at most :data:`MAX_SUGGESTIONS`).
    """

    name: ClassVar[str] = "suggest"
    order: ClassVar[int] = 90

    markets_: dict[str, _Market]

    def __init__(
        self,
        weighting: Weighting = "outcomes",
        purchase_weight: float = 2.0,
        min_clicks: int = 1,
        typo_min_chars: int = 4,
        max_size: int = MAX_SUGGESTIONS,
        prior_searches: float = 3.0,
    ) -> None:
        if weighting not in ("outcomes", "frequency"):
            raise InvalidInputError(f"weighting={weighting!r}: use 'outcomes' or 'frequency'")
        if min(purchase_weight, min_clicks, typo_min_chars, prior_searches) < 0:
            raise InvalidInputError(
                f"purchase_weight={purchase_weight}, min_clicks={min_clicks}, typo_min_chars="
                f"{typo_min_chars}, prior_searches={prior_searches}: use numbers >= 0"
            )
        if not 1 <= max_size <= MAX_SUGGESTIONS:
            raise InvalidInputError(f"max_size={max_size}: use 1 <= max_size <= {MAX_SUGGESTIONS}")
        self.weighting: Weighting = weighting
        self.purchase_weight = purchase_weight
        self.min_clicks = min_clicks
        self.typo_min_chars = typo_min_chars
        self.prior_searches = prior_searches
        self.max_size = max_size

    # -- learning ------------------------------------------------------------------------------
    def fit(self, data: QueryData) -> Self:
        """Count each market's queries and their outcomes; keep the suggestible ones."""
        counts = query_outcomes(data)
        if self.weighting == "frequency":
            counts["score"] = counts["requests"].astype(np.float64)
        else:
            value = counts["clicks"] + self.purchase_weight * counts["purchases"]
            market = counts["domain"]
            mean = value.groupby(market).transform("sum") / counts["requests"].groupby(
                market
            ).transform("sum")
            prior = self.prior_searches
            rate = (value + prior * mean) / (counts["requests"] + prior)
            counts["score"] = counts["requests"] * rate
        kept = counts[(counts["clicks"] >= self.min_clicks) & (counts["score"] > 0)]
        self.markets_ = {
            str(domain): _Market.build(
                dict(zip(group["key"], group["score"].astype(float), strict=True)), self.max_size
            )
            for domain, group in kept.groupby("domain", sort=True)
        }
        return self

    # -- answering -----------------------------------------------------------------------------
    @property
    def domains(self) -> list[str]:
        """The markets with suggestions."""
        return sorted(self._fitted())

    def complete(self, prefix: str, domain: str | None = None, size: int = 8) -> list[Suggestion]:
        """The best ``size`` completions of ``prefix`` in ``domain`` (``None``: every market).

        Any text is accepted: an empty or blank prefix, one longer than :data:`MAX_KEY_CHARS`
        or a market without suggestions completes to nothing.

        Raises:
            InvalidInputError: ``size`` outside ``1..max_size``.
        """
        markets = self._fitted()
        if not 1 <= size <= self.max_size:
            raise InvalidInputError(f"size={size}: use 1 <= size <= {self.max_size}")
        key = prefix_key(prefix)
        if not key.strip() or len(key) > MAX_KEY_CHARS:
            return []
        chosen = list(markets.values()) if domain is None else [markets.get(domain)]
        found: dict[str, tuple[float, bool]] = {}
        for market in chosen:
            if market is None:
                continue
            for query, score, typo in self._candidates(market, key, size):
                old_score, old_typo = found.get(query, (0.0, typo))
                found[query] = (old_score + score, old_typo and typo)
        best = heapq.nsmallest(
            size, found.items(), key=lambda item: (item[1][1], -item[1][0], item[0])
        )
        return [Suggestion(query, score, typo) for query, (score, typo) in best]

    def suggestible(self, query: str, domain: str | None = None) -> bool:
        """Whether ``query`` is one of the queries suggested in ``domain`` (``None``: any)."""
        markets = self._fitted()
        key = query_key(query)
        chosen = list(markets.values()) if domain is None else [markets.get(domain)]
        for market in chosen:
            if market is not None:
                lo = bisect.bisect_left(market.queries, key)
                if lo < len(market.queries) and market.queries[lo] == key:
                    return True
        return False

    def _candidates(
        self, market: _Market, key: str, size: int
    ) -> Iterator[tuple[str, float, bool]]:
        exact = market.best(key, size)
        seen = set(exact)
        for i in exact:
            yield market.queries[i], float(market.scores[i]), False
        if len(exact) == size or not self.typo_min_chars or len(key) < self.typo_min_chars:
            return
        for variant in market.typo_variants(key):
            for i in market.best(variant, size):
                if i not in seen:
                    seen.add(i)
                    yield market.queries[i], float(market.scores[i]), True

    def apply(self, analysis: QueryAnalysis) -> None:
        """Nothing: suggestions are asked for while typing (``GET /suggest``), before a
        search; a submitted query's analysis is left as it is."""

    # -- storage -------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """``suggest.json``: the parameters and, per market, the sorted queries, their scores
        and the precomputed best completions of the heavy prefixes."""
        markets = self._fitted()
        path.mkdir(parents=True, exist_ok=True)
        write_json(
            path / _FILE,
            {
                "format": _FORMAT,
                "params": self._params(),
                "markets": {
                    domain: {
                        "queries": market.queries,
                        "scores": market.scores.tolist(),
                        "heavy": market.heavy,
                    }
                    for domain, market in markets.items()
                },
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
            component = cls(**saved["params"])
            component.markets_ = {
                str(domain): _Market(
                    [str(q) for q in market["queries"]],
                    np.asarray(market["scores"], dtype=np.float64),
                    {str(p): [int(i) for i in top] for p, top in market["heavy"].items()},
                )
                for domain, market in saved["markets"].items()
            }
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise WorkspaceError(
                f"{path} holds no suggest component ({type(exc).__name__}: {exc}); train the "
                "query components again ('shopsearch train --stage query')"
            ) from exc
        return component

    def _params(self) -> dict[str, Any]:
        return {
            "weighting": self.weighting,
            "purchase_weight": self.purchase_weight,
            "min_clicks": self.min_clicks,
            "typo_min_chars": self.typo_min_chars,
            "max_size": self.max_size,
            "prior_searches": self.prior_searches,
        }

    def _fitted(self) -> dict[str, _Market]:
        if not hasattr(self, "markets_"):
            raise NotFittedError("this suggest component is not fitted; call fit(data) first")
        return self.markets_


def query_outcomes(data: QueryData) -> pd.DataFrame:
    """``domain, key, requests, clicks, purchases``: per market and query (:func:`query_key`;
    longer than :data:`MAX_KEY_CHARS` left out), its searches and how many of them led to a
    click and to a purchase."""
    furthest = data.outcomes.groupby("request_id")["stage"].max()
    searches = data.queries[["request_id", "domain", "query"]].copy()
    stage = searches["request_id"].map(furthest).fillna(0).to_numpy(np.int64)
    searches["key"] = searches["query"].astype(str).map(query_key)
    searches["clicks"] = stage >= 1
    searches["purchases"] = stage >= 3
    searches = searches[(searches["key"] != "") & (searches["key"].str.len() <= MAX_KEY_CHARS)]
    grouped = searches.groupby(["domain", "key"], sort=True)
    out = grouped.agg(
        requests=("request_id", "size"), clicks=("clicks", "sum"), purchases=("purchases", "sum")
    ).reset_index()
    out["domain"] = out["domain"].astype(str)
    return out


__all__ = [
    "HEAVY_RANGE",
    "MAX_KEY_CHARS",
    "MAX_SUGGESTIONS",
    "QuerySuggester",
    "Suggestion",
    "prefix_key",
    "query_key",
    "query_outcomes",
]
