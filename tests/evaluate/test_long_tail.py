"""Long-tail query slices: rare terms (judged sets) and rare query texts (logs)."""

from __future__ import annotations

from shopsearch.evaluate.long_tail import query_terms, rare_queries, rare_term_queries


def test_query_terms_are_lower_cased_alphanumeric_words() -> None:
    assert query_terms("Cordless DRILL, 18v!") == {"cordless", "drill", "18v"}


def test_rare_term_queries_flag_queries_with_a_term_rare_in_training() -> None:
    train = ["cordless drill", "drill bits", "cordless saw", "drill press", "wood saw"]
    test = ["cordless drill", "drill chuck", "saw", "drlil", "wood drill"]
    # "chuck" and the typo "drlil" never occur; "wood" occurs once (<= 1)
    assert rare_term_queries(train, test, max_count=1) == ["drill chuck", "drlil", "wood drill"]
    assert rare_term_queries(train, test, max_count=0) == ["drill chuck", "drlil"]


def test_rare_queries_count_whole_query_texts() -> None:
    train = ["sofa", "sofa", "lamp"]
    assert rare_queries(train, ["sofa", "lamp", "rug"], max_count=1) == ["lamp", "rug"]
