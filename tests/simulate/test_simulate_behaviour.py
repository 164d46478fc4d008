"""Position bias, traffic skew, long-tail users and realistic funnel rates."""

from __future__ import annotations

import numpy as np
import pytest

from shopsearch.simulate import LexicalNoisePolicy, ReplayResult, World, replay

SESSIONS = 2500


@pytest.fixture(scope="module")
def logged(world3: World) -> ReplayResult:
    return replay(
        world3, LexicalNoisePolicy(world3.catalog.table), SESSIONS, seed=3, keep_logs=True
    )


def test_ctr_falls_with_position(logged: ReplayResult) -> None:
    assert logged.logs is not None
    impressions = logged.logs.impressions.to_pandas()
    clicks = logged.logs.interactions.filter(
        np.asarray(logged.logs.interactions["kind"].to_pylist()) == "click"
    ).to_pandas()
    clicked = impressions.merge(
        clicks[["request_id", "product_id"]],
        how="left",
        on=["request_id", "product_id"],
        indicator=True,
    )
    ctr = (clicked["_merge"] == "both").groupby(clicked["position"]).mean()
    assert ctr[1] > 2 * ctr[10]
    assert ctr[1] > ctr[2] > ctr[5] > ctr[20]
    share = logged.summary.clicked_position_share
    assert 0.2 < share[0] < 0.45  # calibrated to ~31% (trivago clickouts)
    assert share[0] > share[1] > share[4]


def test_traffic_is_skewed(logged: ReplayResult) -> None:
    requests = {d.domain: d.requests for d in logged.summary.domains}
    assert list(requests) == ["us", "gb", "au"]
    assert requests["us"] >= 5 * min(requests.values())
    assert requests["us"] > requests["gb"] > requests["au"] > 0


def test_funnel_rates_are_realistic(logged: ReplayResult) -> None:
    total = logged.summary.total
    assert 0.02 < total.ctr < 0.07
    assert total.clicks > total.carts > total.purchases > 0
    assert total.purchase_per_click < 0.03
    for domain in logged.summary.domains:
        assert domain.clicks >= domain.carts >= domain.purchases


def test_many_users_are_long_tail(logged: ReplayResult) -> None:
    assert logged.summary.long_tail_user_share > 0.3
    assert 0.03 < logged.summary.typo_share < 0.12
