"""Hybrid sample construction: every logged candidate gets the deepest level it reached."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.prerank.samples import (
    level_counts,
    product_stats,
    stream_lists,
    upstream_features,
)
from shopsearch.store.schema import TABLES


def _table(name: str, rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=TABLES[name])


def _stream(rid: str, stage: str, pids: list[str], scores: list[float]) -> list[dict[str, object]]:
    return [
        {"request_id": rid, "domain": "us", "stage": stage, "product_id": p,
         "position": i + 1, "score": s}
        for i, (p, s) in enumerate(zip(pids, scores, strict=True))
    ]  # fmt: skip


@pytest.fixture
def logs() -> tuple[pa.Table, pa.Table, pa.Table, pa.Table]:
    stream = _table(
        "stream",
        _stream("r1", "retrieve", ["a", "b", "c", "d", "e"], [5.0, 4.0, 3.0, 2.0, 1.0])
        + _stream("r1", "prerank", ["a", "b", "c"], [5.0, 4.0, 3.0])
        + _stream("r1", "rank", ["c", "a", "b"], [0.9, 0.5, 0.1]),
    )
    import datetime as dt

    now = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    requests = _table(
        "requests",
        [{"request_id": r, "session_id": "s", "user_id": "u", "domain": "us",
          "query": "red shoe", "filters": "{}", "timestamp": now} for r in ("r1", "r2")],
    )  # fmt: skip
    impressions = _table(
        "impressions",
        [{"request_id": "r1", "product_id": p, "position": i + 1, "price": 1.0, "scores": "{}"}
         for i, p in enumerate(["c", "a", "z"])],
    )  # fmt: skip
    interactions = _table(
        "interactions",
        [{"request_id": "r1", "user_id": "u", "product_id": p, "kind": k, "timestamp": now,
          "value": 0.0} for p, k in [("a", "click"), ("a", "add_to_cart"), ("a", "purchase"),
                                     ("c", "click")]],
    )  # fmt: skip
    return stream, requests, impressions, interactions


def test_levels_ranker_values_and_upstream(logs) -> None:
    (one,) = stream_lists(*logs)
    assert one.request_id == "r1"
    assert one.query == "red shoe"
    # z was shown beyond the logged depth: appended, not retrieved as far as the stream knows
    assert one.product_ids == ["a", "b", "c", "d", "e", "z"]
    assert one.levels.tolist() == [5, 1, 3, 0, 0, 2]
    assert np.isnan(one.ranker[[3, 4, 5]]).all()
    assert one.ranker[[0, 1, 2]].tolist() == pytest.approx([0.5, 0.1, 0.9])
    assert one.upstream[:, 0].tolist() == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])
    assert one.upstream[-1, 1] > one.upstream[-2, 1]
    assert level_counts([one]) == {
        "retrieved": 2, "pre-ranked": 1, "shown": 1, "clicked": 1, "carted": 0, "purchased": 1,
    }  # fmt: skip


def test_upstream_features_of_nothing_scored() -> None:
    out = upstream_features([0.0, 0.0], [1, 2], 2)
    assert out[:, 0].tolist() == [0.0, 0.0]
    assert out[1, 1] == pytest.approx(1.0)


def test_without_a_stream_the_error_says_how_to_log_one(logs) -> None:
    _, requests, impressions, interactions = logs
    with pytest.raises(InvalidInputError, match="stream_sample"):
        stream_lists(TABLES["stream"].empty_table(), requests, impressions, interactions)


def test_product_stats_are_log_counts(logs) -> None:
    _, _, impressions, interactions = logs
    stats = product_stats(impressions, interactions)
    assert stats.loc["a", "clicks"] == pytest.approx(np.log1p(1))
    assert stats.loc["a", "purchases"] == pytest.approx(np.log1p(1))
    assert stats.loc["z", "shown"] == pytest.approx(np.log1p(1))
    assert stats.loc["z", "clicks"] == 0.0
