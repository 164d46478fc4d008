"""New products and the long-term effect of their sales (simulate/launch.py, replay_days)."""

from __future__ import annotations

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.simulate import LaunchParams, RandomPolicy, World, replay_days
from shopsearch.simulate.config import SimulationConfig
from shopsearch.simulate.launch import appeal, quality_offset, with_sales
from shopsearch.simulate.render import start_us


def test_new_items_are_what_the_products_table_shows(world3: World) -> None:
    table = world3.catalog.table
    created = table.column("created_at").cast("int64").to_numpy()
    days = world3.config.launch.new_days
    recent = created >= start_us(world3.config) - days * 86_400 * 1_000_000
    rows = world3.products.index.get_indexer(table.column("product_id").to_pylist())
    assert np.array_equal(world3.new_items[rows], recent)
    assert 0 < world3.new_items.mean() < 0.15


def test_sales_make_new_items_more_attractive_up_to_a_cap(world3: World) -> None:
    p = world3.config.launch
    new = np.flatnonzero(world3.new_items)
    old = np.flatnonzero(~world3.new_items)
    assert quality_offset(world3)[new] == pytest.approx(-p.cold_start)
    assert (quality_offset(world3)[old] == 0).all()
    sales = np.zeros(len(world3.products.ids))
    sales[new[0]], sales[new[1]], sales[old[0]] = 5.0, 1e6, 9.0
    sold = with_sales(world3, sales)
    gain = appeal(sold, new[:2]) - world3.products.quality[new[:2]]
    assert gain[0] == pytest.approx(p.sales_growth * np.log(6.0) - p.cold_start)
    assert gain[1] == pytest.approx(p.max_gain - p.cold_start)
    assert appeal(sold, old[:1]) == pytest.approx(world3.products.quality[old[:1]])


def test_launch_params_validate() -> None:
    with pytest.raises(InvalidInputError, match="cold_start"):
        SimulationConfig(launch=LaunchParams(cold_start=-1.0))
    data = SimulationConfig().to_dict()
    assert SimulationConfig.from_dict(data).launch == LaunchParams()
    del data["launch"]  # configs written before the launch group read back with its defaults
    assert SimulationConfig.from_dict(data).launch == LaunchParams()


def test_replay_days_carry_sales_over(world3: World) -> None:
    policy = RandomPolicy(world3.catalog.table, seed=1)
    seen: list[int] = []
    results = replay_days(world3, policy, 2, 40, seed=3, after_day=lambda d, _r: seen.append(d))
    assert seen == [0, 1]
    assert len(results) == 2
    assert all(r.logs is not None for r in results)
    assert results[0].logs is not None
    assert results[1].logs is not None
    ids0 = set(results[0].logs.requests.column("session_id").to_pylist())
    ids1 = set(results[1].logs.requests.column("session_id").to_pylist())
    assert not ids0 & ids1  # each day has its own sessions
    day1_world = results[1].truth.world
    assert day1_world.sales is not None
    assert day1_world.sales.sum() == results[0].summary.total.purchases
    again = replay_days(world3, policy, 2, 40, seed=3)
    assert again[1].summary.total.clicks == results[1].summary.total.clicks
    assert world3.sales is None  # the source world is not changed
    with pytest.raises(InvalidInputError, match="days"):
        replay_days(world3, policy, 0, 40, seed=3)
