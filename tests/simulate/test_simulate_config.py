"""SimulationConfig validates its values and round-trips through to_dict/from_dict."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.simulate import BehaviourParams, MarketParams, SimulationConfig
from shopsearch.simulate.config import default_traffic_shares


def test_defaults_are_a_small_demo() -> None:
    config = SimulationConfig()
    assert (config.domains, config.products, config.users, config.sessions) == (
        3,
        2000,
        5000,
        20000,
    )
    assert config.list_length == 20
    assert len(config.position_bias()) == 20
    assert config.position_bias()[0] > config.position_bias()[1] > config.position_bias()[19]


def test_round_trip_through_json() -> None:
    config = SimulationConfig(
        seed=9,
        markets=MarketParams(traffic_shares=(0.7, 0.2, 0.1)),
        behaviour=BehaviourParams(position_bias=(0.9, 0.5)),
    )
    data = orjson.loads(orjson.dumps(config.to_dict()))
    assert SimulationConfig.from_dict(data) == config


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"domains": 9}, "domains=9"),
        ({"domains": 0}, "domains=0"),
        ({"products": 10}, "products >= 100"),
        ({"users": 2, "domains": 3}, "users >= domains"),
        ({"list_length": 0}, "list_length=0"),
        ({"start": "yesterday"}, "ISO date"),
        ({"markets": MarketParams(traffic_shares=(1.0,))}, "one positive share per domain"),
        ({"behaviour": BehaviourParams(position_bias=(1.5,))}, r"position_bias\[0\]"),
        ({"behaviour": BehaviourParams(click_grade=(0.0, 1.0))}, "4 values"),  # type: ignore[arg-type]
    ],
)
def test_bad_values_fail_clearly(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        dataclasses.replace(SimulationConfig(), **changes)


def test_default_traffic_shares() -> None:
    assert default_traffic_shares(3) == pytest.approx((0.78, 0.14, 0.08), abs=0.01)
    shares = default_traffic_shares(6)
    assert 5 <= shares[0] / shares[-1] <= 20
    assert default_traffic_shares(1) == (1.0,)
