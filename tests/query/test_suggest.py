"""The ``suggest`` component: completions learned from a log, ranked by outcomes, per market,
typo-tolerant, never a query that found nothing; any input answered; saved as plain files."""

from __future__ import annotations

import random
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis
from shopsearch.query.data import QueryData
from shopsearch.query.suggest import (
    HEAVY_RANGE,
    QuerySuggester,
    prefix_key,
    query_key,
    query_outcomes,
)

_CATALOG = ["domain", "product_id", "title", "brand", "category", "description"]


def log(searches: list[tuple[str, str, int, int]]) -> QueryData:
    """``(domain, query, times typed, furthest stage of each: 0 none, 1 click, 3 purchase)``."""
    queries, outcomes = [], []
    for domain, query, times, stage in searches:
        for _ in range(times):
            request = f"r{len(queries)}"
            queries.append((request, request, "u", domain, query, len(queries)))
            if stage:
                outcomes.append((request, domain, query, "p", stage, ""))
    query_columns = ["request_id", "session_id", "user_id", "domain", "query", "timestamp"]
    outcome_columns = ["request_id", "domain", "query", "product_id", "stage", "category"]
    return QueryData(
        pd.DataFrame(columns=_CATALOG),
        pd.DataFrame(queries, columns=query_columns),
        pd.DataFrame(outcomes, columns=outcome_columns),
        "events",
    )


LOG = log(
    [
        ("us", "coffee table", 10, 1),
        ("us", "coffee maker", 30, 0),  # typed often, never clicked: never suggested
        ("us", "coffee mug", 6, 3),  # fewer searches, but they end in purchases
        ("us", "Coffee  Table", 2, 1),  # the same query written otherwise
        ("us", "car seat", 5, 1),
        ("gb", "cotton sheets", 4, 1),
        ("gb", "coffee table", 1, 1),
    ]
)


@pytest.fixture(scope="module")
def suggester() -> QuerySuggester:
    return QuerySuggester().fit(LOG)


def _queries(suggester: QuerySuggester, prefix: str, domain: str | None = "us") -> list[str]:
    return [s.query for s in suggester.complete(prefix, domain, 10)]


def test_outcomes_are_counted_per_market_and_query() -> None:
    counts = query_outcomes(LOG).set_index(["domain", "key"])
    assert counts.loc[("us", "coffee table")].tolist() == [12, 12, 0]
    assert counts.loc[("us", "coffee mug")].tolist() == [6, 6, 6]
    assert counts.loc[("us", "coffee maker")].tolist() == [30, 0, 0]


def test_completions_are_ranked_by_what_they_led_to(suggester: QuerySuggester) -> None:
    assert _queries(suggester, "co") == ["coffee mug", "coffee table"]
    assert "coffee maker" not in _queries(suggester, "coffee m")
    frequency = QuerySuggester(weighting="frequency", min_clicks=0).fit(LOG)
    assert _queries(frequency, "co") == ["coffee maker", "coffee table", "coffee mug"]


def test_markets_are_separate_and_merge_for_all(suggester: QuerySuggester) -> None:
    assert _queries(suggester, "co", "gb") == ["cotton sheets", "coffee table"]
    assert _queries(suggester, "co", None)[:2] == ["coffee mug", "coffee table"]
    assert _queries(suggester, "co", "fr") == []
    assert suggester.domains == ["gb", "us"]


def test_one_typo_is_forgiven_from_four_characters(suggester: QuerySuggester) -> None:
    typo = suggester.complete("cofe", "us", 5)
    assert [s.query for s in typo] == ["coffee mug", "coffee table"]
    assert all(s.typo for s in typo)
    assert _queries(suggester, "cae") == []  # under 4 characters: exact only
    assert _queries(suggester, "cra s") == ["car seat"]  # two neighbours swapped
    assert _queries(suggester, "coffe tab") == ["coffee table"]  # a character left out
    assert _queries(suggester, "xoffee") == []  # never the first character
    exact = QuerySuggester(typo_min_chars=0).fit(LOG)
    assert _queries(exact, "cofe") == []


def test_exact_completions_come_before_typo_ones() -> None:
    suggester = QuerySuggester().fit(
        log([("us", "card", 1, 1), ("us", "cart", 9, 1), ("us", "carts", 1, 1)])
    )
    found = suggester.complete("card", "us", 5)
    assert [(s.query, s.typo) for s in found] == [("card", False), ("cart", True),
                                                   ("carts", True)]  # fmt: skip


@pytest.mark.parametrize(
    "prefix", ["", "   ", "x" * 10_000, "沙发", "кофе", "🙂", "co\x00ffee", "*", "coffee table "]
)
def test_any_input_is_answered(suggester: QuerySuggester, prefix: str) -> None:
    found = suggester.complete(prefix, "us", 8)
    assert len(found) <= 8
    assert all(s.typo or s.query.startswith(prefix_key(prefix)) for s in found)


def test_a_trailing_space_is_a_finished_word() -> None:
    suggester = QuerySuggester().fit(log([("us", "tv stand", 1, 1), ("us", "tvs", 5, 1)]))
    assert _queries(suggester, "tv") == ["tvs", "tv stand"]
    assert _queries(suggester, "tv ") == ["tv stand"]
    assert prefix_key("TV  ") == "tv "
    assert query_key("  Coffee\tTABLE ") == "coffee table"


def test_bad_parameters_and_unfitted() -> None:
    with pytest.raises(InvalidInputError, match="weighting"):
        QuerySuggester(weighting="clicks")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="max_size"):
        QuerySuggester(max_size=0)
    with pytest.raises(NotFittedError):
        QuerySuggester().complete("co")
    with pytest.raises(InvalidInputError, match="size=0"):
        QuerySuggester().fit(LOG).complete("co", "us", 0)


def test_heavy_prefixes_answer_as_a_full_scan() -> None:
    rng = random.Random(3)
    words = ["".join(rng.choices(string.ascii_lowercase[:4], k=rng.randint(4, 8)))
             for _ in range(8 * HEAVY_RANGE)]  # fmt: skip
    searches = [("us", w, rng.randint(1, 5), 1) for w in dict.fromkeys(words)]
    suggester = QuerySuggester(typo_min_chars=0, prior_searches=0).fit(log(searches))
    scores = {w: float(n) for _, w, n, _ in searches}
    market = suggester.markets_["us"]
    assert market.heavy  # the short prefixes are precomputed
    assert "a" in market.heavy
    for prefix in ["a", "b", "ab", "d", "abc", "zz"]:
        found = suggester.complete(prefix, "us", 10)
        expected = sorted((w for w in scores if w.startswith(prefix)),
                          key=lambda w: (-scores[w], w))[:10]  # fmt: skip
        assert [s.score for s in found] == [scores[w] for w in expected]


def test_save_load_round_trip(suggester: QuerySuggester, tmp_path: Path) -> None:
    assert QUERY_COMPONENTS.get("suggest") is QuerySuggester
    suggester.save(tmp_path / "s")
    assert not list((tmp_path / "s").glob("*.pkl"))
    loaded = QuerySuggester.load(tmp_path / "s")
    for prefix in ["co", "cofe", "car"]:
        assert loaded.complete(prefix, "us") == suggester.complete(prefix, "us")
    assert np.array_equal(loaded.markets_["us"].scores, suggester.markets_["us"].scores)
    (tmp_path / "s" / "suggest.json").write_text("{}")
    with pytest.raises(WorkspaceError, match="format None"):
        QuerySuggester.load(tmp_path / "s")


def test_apply_leaves_a_search_as_it_is(suggester: QuerySuggester) -> None:
    analysis = QueryAnalysis("coffee", "coffee")
    suggester.apply(analysis)
    assert analysis == QueryAnalysis("coffee", "coffee")
