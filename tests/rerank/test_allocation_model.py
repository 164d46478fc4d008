"""MODRL-TA's parts on tiny data written here: blends, Q ensembles, CEM, the merge, the model."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.rerank.allocation import MODRLTA, ItemStats, PositionModel, QEnsemble, blend_order
from shopsearch.rerank.allocation.cem import cross_entropy_weights
from shopsearch.rerank.allocation.modrl_ta import _best_merge


def tiny_logs(days: int = 4, requests_per_day: int = 60, seed: int = 0) -> pd.DataFrame:
    """Requests of 8 shown items from 30 products (5 new); clicks fall with position."""
    rng = np.random.default_rng(seed)
    rows = []
    start = pd.Timestamp("2024-01-01", tz="UTC")
    for r in range(days * requests_per_day):
        shown = rng.choice(30, 8, replace=False)
        t = start + pd.Timedelta(minutes=int(r * 24 * 60 / requests_per_day))
        for pos, item in enumerate(shown.tolist(), start=1):
            appeal = 0.3 if item % 3 == 0 else 0.1
            clicked = rng.random() < appeal / pos
            rows.append(
                {
                    "request_id": f"q{r}",
                    "timestamp": t,
                    "domain": "us",
                    "product_id": f"p{item:02d}",
                    "position": pos,
                    "clicked": clicked,
                    "purchased": clicked and rng.random() < 0.3,
                    "new": item < 5,
                }
            )
    return pd.DataFrame(rows)


def tiny_catalog() -> pd.DataFrame:
    return pd.DataFrame(
        {"domain": "us", "product_id": [f"p{i:02d}" for i in range(30)], "new": np.arange(30) < 5}
    )


def test_blends_keep_the_ranking_at_zero_and_put_new_items_first_at_one() -> None:
    new = np.array([False, False, True, False, True])
    assert blend_order(new, 0.0).tolist() == [0, 1, 2, 3, 4]
    assert blend_order(new, 1.0).tolist() == [2, 4, 0, 1, 3]
    lifted = blend_order(new, 0.2).tolist()
    assert lifted.index(4) < 4
    assert sorted(lifted) == [0, 1, 2, 3, 4]
    with pytest.raises(InvalidInputError, match="0 <= w <= 1"):
        blend_order(new, 1.5)


def test_q_ensemble_recovers_a_linear_function_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(400, 3))
    y = phi @ np.array([1.0, -2.0, 0.5]) + 0.01 * rng.normal(size=400)
    model = QEnsemble(members=4, ridge=0.1).fit(phi, y)
    assert np.allclose(model.predict(phi), y, atol=0.05)
    assert model.spread(phi).max() < 0.05
    model.save(tmp_path / "q.npy")
    again = QEnsemble.load(tmp_path / "q.npy")
    assert np.allclose(again.predict(phi, member=1), model.predict(phi, member=1))
    with pytest.raises(InvalidInputError, match="not fitted"):
        QEnsemble().predict(phi)


def test_cem_finds_the_best_corner_of_the_simplex() -> None:
    weights, best = cross_entropy_weights(lambda w: float(w[2] - w[0]), 3, seed=1)
    assert weights[2] > 0.8
    assert best > 0.7
    assert weights.sum() == pytest.approx(1.0)


def test_position_model_is_non_increasing() -> None:
    logs = tiny_logs()
    model = PositionModel.fit(logs["position"].to_numpy() - 1, logs["clicked"].to_numpy())
    assert model.page == 8
    assert model.examination[0] == 1.0
    assert (np.diff(model.examination) <= 0).all()
    exam, on = model.features(np.array([0, 7, 8]))
    assert on.tolist() == [1.0, 1.0, 0.0]
    assert exam[2] == 0.0


def test_best_merge_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    n, max_shift = 7, 2
    value = rng.normal(size=(n, n))
    new = np.array([2, 5])
    best, best_order = -np.inf, None
    old = [i for i in range(n) if i not in new]
    for slots in itertools.combinations(range(n), len(new)):
        if any(abs(s - int(i)) > max_shift for s, i in zip(slots, new, strict=True)):
            continue
        order = np.empty(n, dtype=int)
        order[list(slots)] = new
        order[[p for p in range(n) if p not in slots]] = old
        total = value[order, np.arange(n)].sum()
        if total > best:
            best, best_order = total, order
    got = _best_merge(value, new, max_shift)
    assert best_order is not None
    assert value[got, np.arange(n)].sum() == pytest.approx(best)


def test_modrl_ta_fits_allocates_and_round_trips(tmp_path: Path) -> None:
    logs, catalog = tiny_logs(), tiny_catalog()
    model = MODRLTA(members=3, max_shift=3, window=10, cem_requests=40, seed=0).fit(logs, catalog)
    assert model.weights_ is not None
    assert model.weights_.sum() == pytest.approx(1.0)
    assert model.info_["transitions"]["live"] == 0
    keys = [("us", f"p{i:02d}") for i in (10, 11, 2, 12, 13, 14, 1, 15)]
    x = model.state(keys)
    allocation = model.allocate(x)
    assert sorted(allocation.order.tolist()) == list(range(8))
    old = [i for i in allocation.order.tolist() if i not in (2, 6)]
    assert old == sorted(old)  # established items keep the ranking's relative order
    assert np.abs(allocation.shift).max() <= 3 + 2
    assert (np.abs(allocation.shift[[2, 6]]) <= 3).all()
    # all exposure: new items go as high as allowed
    lifted = model.allocate(x, weights=np.array([0.0, 0.0, 1.0]))
    assert lifted.placed[[2, 6]].tolist() == [0, 3]
    windows = [keys, [("us", f"p{i:02d}") for i in (20, 21, 22, 3, 23)]]
    on_windows = MODRLTA(members=2, max_shift=3, window=10, seed=0).fit(
        logs, catalog, windows=windows
    )
    assert on_windows.weights_ is not None
    assert on_windows.weights_.sum() == pytest.approx(1.0)
    model.save(tmp_path / "allocation")
    again = MODRLTA.load(tmp_path / "allocation")
    assert np.array_equal(again.allocate(again.state(keys)).order, allocation.order)


def test_live_logs_replace_simulated_ones_progressively() -> None:
    logs, catalog = tiny_logs(days=6), tiny_catalog()
    since = pd.Timestamp("2024-01-04", tz="UTC")
    model = MODRLTA(members=2, window=10, ramp_days=4.0, cem_requests=20).fit(logs, catalog, since)
    assert model.info_["live_days"] == pytest.approx(3.0, abs=0.05)
    assert model.info_["simulated_share_dropped"] == pytest.approx(0.75, abs=0.02)
    assert model.info_["transitions"]["live"] == int((logs["timestamp"] > since).sum())
    with pytest.raises(InvalidInputError, match="lack column"):
        MODRLTA().fit(logs.drop(columns="new"), catalog)


def test_item_stats_count_and_round_trip(tmp_path: Path) -> None:
    stats = ItemStats([("us", "a"), ("us", "b")], np.array([True, False]))
    stats.add([("us", "a"), ("us", "zz")], np.array([2.0, 5.0]), np.ones(2), np.ones(2))
    assert stats.impressions.tolist() == [2.0, 0.0]
    stats.save(tmp_path / "s.parquet")
    again = ItemStats.load(tmp_path / "s.parquet")
    x = again.features([("us", "a"), ("us", "unknown")], [0, 1])
    assert x[0, 1] == 1.0
    assert x[1, 1] == 0.0
    assert x[1, 3] == 0.0
