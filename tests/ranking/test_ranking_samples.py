"""Training samples: labels, leakage-free priors, sequences, splits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.ranking.samples import Samples, build_samples, split_by_time
from shopsearch.store.workspace import Workspace

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _write_logs(root: object, clicks: list[tuple[str, str, str, int]]) -> Workspace:
    """Two products, three requests of 'red shoe' an hour apart; ``clicks`` as given."""
    ws = Workspace.create(str(root))
    ws.append(
        "products",
        pa.table(
            {
                "domain": ["us", "us"],
                "product_id": ["a", "b"],
                "title": ["Red Shoe", "Blue Hat"],
                "description": ["", ""],
                "brand": ["Acme", "Hatco"],
                "category": [["Apparel", "Shoes"], ["Apparel", "Hats"]],
                "price": [10.0, 30.0],
                "attributes": ["{}", "{}"],
                "created_at": [T0, T0],
                "in_stock": [True, True],
            }
        ),
    )
    ws.append(
        "requests",
        pa.table(
            {
                "request_id": ["r1", "r2", "r3"],
                "session_id": ["s1", "s2", "s3"],
                "user_id": ["u1", "u2", "u1"],
                "domain": ["us"] * 3,
                "query": ["red shoe"] * 3,
                "filters": ["{}"] * 3,
                "timestamp": [T0 + timedelta(hours=h) for h in range(3)],
            }
        ),
    )
    ws.append(
        "impressions",
        pa.table(
            {
                "request_id": ["r1", "r1", "r2", "r2", "r3", "r3"],
                "product_id": ["a", "b", "b", "a", "a", "b"],
                "position": [1, 2, 1, 2, 1, 2],
                "price": [10.0, 30.0, 30.0, 10.0, 10.0, 30.0],
                "scores": ["{}"] * 6,
            }
        ),
    )
    ws.append(
        "interactions",
        pa.table(
            {
                "request_id": [c[0] for c in clicks],
                "user_id": [c[1] for c in clicks],
                "product_id": [c[2] for c in clicks],
                "kind": ["click"] * len(clicks),
                "timestamp": [
                    T0 + timedelta(hours=int(c[0][1:]) - 1, minutes=c[3]) for c in clicks
                ],
                "value": [0.0] * len(clicks),
            }
        ),
    )
    return ws


def _row(samples: Samples, request: str, product: str) -> dict[str, object]:
    rows = samples.rows
    hit = rows[(rows["request_id"] == request) & (rows["product_id"] == product)]
    assert len(hit) == 1
    return dict(hit.iloc[0])


def test_future_click_does_not_change_an_earlier_prior(tmp_path: object) -> None:
    import pathlib

    base = pathlib.Path(str(tmp_path))
    early = build_samples(_write_logs(base / "a", [("r1", "u1", "a", 1)]).connect())
    # Same logs plus a click in r2 (an hour later) on 'b'.
    later = build_samples(
        _write_logs(base / "b", [("r1", "u1", "a", 1), ("r2", "u2", "b", 1)]).connect()
    )
    for column in ("ctr_prior", "qp_ctr_prior", "log_clicks", "leaf_match", "has_query_leaf"):
        for request in ("r1", "r2"):
            for product in ("a", "b"):
                assert (
                    _row(early, request, product)[column] == _row(later, request, product)[column]
                ), (column, request, product)
    # r3 (after the new click) does see it.
    assert _row(later, "r3", "b")["log_clicks"] > _row(early, "r3", "b")["log_clicks"]
    # Within r1 nothing is known yet; r2 sees r1's click on 'a' and infers the query's leaf.
    assert _row(early, "r1", "a")["log_clicks"] == 0
    assert _row(early, "r2", "a")["log_clicks"] > 0
    assert _row(early, "r2", "a")["leaf_match"] == 1.0
    assert _row(early, "r2", "b")["leaf_match"] == 0.0
    assert _row(early, "r1", "a")["click"] == 1.0


def test_sequence_holds_only_earlier_behaviour(tmp_path: object) -> None:
    samples = build_samples(_write_logs(tmp_path, [("r1", "u1", "a", 1)]).connect())
    rows = samples.rows
    r1 = int(rows.loc[rows["request_id"] == "r1", "req"].iloc[0])
    r3 = int(rows.loc[rows["request_id"] == "r3", "req"].iloc[0])
    assert samples.seq_kinds[r1].sum() == 0
    assert samples.seq_items[r3][0] == "a"
    assert samples.seq_kinds[r3][0] == 1
    assert samples.seq_kinds[r3][1:].sum() == 0
    assert bool(rows.loc[rows["request_id"] == "r3", "long_tail"].iloc[0])


def test_tiny_simulated_samples(tiny_samples: Samples) -> None:
    rows = tiny_samples.rows
    assert len(rows) > 0
    assert rows["click"].sum() > 0
    assert (rows["cart"] <= rows["click"]).all()
    assert (rows["purchase"] <= rows["cart"]).all()
    assert np.isfinite(rows.select_dtypes("number").to_numpy(np.float64)).all()
    assert tiny_samples.seq_items.shape == (tiny_samples.n_requests, 20)


def test_split_by_time_keeps_requests_whole(tiny_samples: Samples) -> None:
    train, test = split_by_time(tiny_samples, 0.2)
    assert set(train.rows["request_id"]).isdisjoint(set(test.rows["request_id"]))
    assert train.rows["tsu"].max() <= test.rows["tsu"].min()
    assert len(train) + len(test) == len(tiny_samples)
    with pytest.raises(InvalidInputError):
        split_by_time(tiny_samples, 1.5)
