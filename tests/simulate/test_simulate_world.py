"""The generated world: category tree, regional vocabulary, markets, and its save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shopsearch.simulate import (
    LexicalNoisePolicy,
    SimulationConfig,
    World,
    generate_world,
    load_world,
    replay,
    save_world,
)
from shopsearch.simulate.lexical import tokenize


def _titles(world: World, domain: str) -> str:
    table = world.catalog.table
    titles = [
        t
        for d, t in zip(table["domain"].to_pylist(), table["title"].to_pylist(), strict=True)
        if d == domain
    ]
    return " ".join(titles).lower()


def test_category_tree_and_brands(world3: World) -> None:
    paths = {leaf.path for leaf in world3.lexicon.leaves}
    assert len(paths) >= 12
    assert all(len(p) == 3 for p in paths)
    assert ("Furniture", "Living Room", "Sofas") in paths
    assert len(set(world3.brands.names)) == len(world3.brands.names)
    assert np.isfinite(world3.catalog.price[world3.catalog.carried]).all()


def test_regional_words_differ_by_market(world3: World) -> None:
    us, gb = _titles(world3, "us"), _titles(world3, "gb")
    assert "gray" in tokenize(us)
    assert "gray" not in tokenize(gb)
    assert "grey" in tokenize(gb)
    assert "flashlight" in us
    assert "torch" in gb


def test_markets_carry_overlapping_subsets(world3: World) -> None:
    carried = world3.catalog.carried
    assert carried.any(axis=0).all()
    overlap = (carried[0] & carried[1]).sum() / carried.shape[1]
    assert 0.5 < overlap < 0.95
    levels = world3.catalog.leaf_median
    assert (levels[2] > levels[0]).mean() > 0.8  # AUD prices are higher than USD prices


def test_save_and_load_give_the_same_replays(world3: World, tmp_path: Path) -> None:
    save_world(world3, tmp_path / "gt")
    loaded = load_world(tmp_path / "gt")
    assert loaded.config == world3.config
    assert loaded.catalog.table.equals(world3.catalog.table)
    np.testing.assert_array_equal(loaded.catalog.price, world3.catalog.price)
    a = replay(world3, LexicalNoisePolicy(world3.catalog.table), 100, seed=6, keep_logs=True)
    b = replay(loaded, LexicalNoisePolicy(loaded.catalog.table), 100, seed=6, keep_logs=True)
    assert a.logs is not None
    assert b.logs is not None
    assert a.logs.interactions.equals(b.logs.interactions)


def test_users_are_heavy_tailed() -> None:
    world = generate_world(SimulationConfig(users=2000, products=200, sessions=0))
    activity = np.sort(world.users.activity)[::-1]
    assert activity[:200].sum() > 0.4 * activity.sum()  # top 10% of users: > 40% of activity
    assert np.allclose(world.users.interest.sum(axis=1), 1.0)
