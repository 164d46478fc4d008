"""Users' appetite for variety and the satiation it causes (issue 16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from shopsearch.errors import InvalidInputError
from shopsearch.simulate import (
    GroundTruth,
    SimulationConfig,
    World,
    generate_world,
    load_world,
    save_world,
)
from shopsearch.simulate.behaviour import redundancy, satiated_click, similarity
from shopsearch.simulate.config import DiversityParams


def _same_leaf_items(world: World) -> tuple[int, int, int]:
    """Two products of one leaf and brand, and one of another leaf."""
    p = world.products
    for a in range(len(p.ids)):
        same = np.flatnonzero((p.leaf == p.leaf[a]) & (p.brand == p.brand[a]))
        other = np.flatnonzero(p.leaf != p.leaf[a])
        if same.size > 1 and other.size:
            return a, int(same[same != a][0]), int(other[0])
    raise AssertionError("no two products share a leaf and a brand")


def test_users_have_an_appetite_for_variety_saved_with_the_world(
    world3: World, tmp_path: Path
) -> None:
    v = world3.users.variety
    assert v.shape == (len(world3.users.ids),)
    assert ((v >= 0) & (v <= 1)).all()
    assert (v < 0.2).mean() > 0.2
    assert (v > 0.8).mean() > 0.2
    save_world(world3, tmp_path)
    assert np.array_equal(load_world(tmp_path).users.variety, v)
    users = pq.read_table(tmp_path / "users.parquet").drop_columns(["variety"])
    pq.write_table(users, tmp_path / "users.parquet")  # a world saved before it existed
    assert not load_world(tmp_path).users.variety.any()


def test_the_appetite_has_its_own_stream(world3: World) -> None:
    config = world3.config
    other = generate_world(
        SimulationConfig(**{**config.__dict__, "diversity": DiversityParams(appetite_a=3.0)})
    )
    assert np.array_equal(other.users.taste, world3.users.taste)
    assert not np.array_equal(other.users.variety, world3.users.variety)


def test_similarity_and_satiation(world3: World) -> None:
    a, b, c = _same_leaf_items(world3)
    assert similarity(world3, np.array(a), np.array(b)) >= world3.config.diversity.brand_weight
    assert similarity(world3, np.array(a), np.array(c)) == 0.0
    items = np.array([[a, b, c, -1]], dtype=np.int32)
    examined = np.array([[True, True, True, False]])
    r = redundancy(world3, items, examined)
    assert r[0, 0] == 0.0
    assert r[0, 1] >= 0.5
    assert r[0, 2] == 0.0
    assert r[0, 3] == 0.0
    unseen = redundancy(world3, items, np.array([[False, True, True, True]]))
    assert unseen[0, 1] == 0.0  # only what was examined above tires the user
    click = np.full((2, 4), 0.3)
    appetite = np.array([[0.0], [1.0]])
    sated = satiated_click(world3, click, appetite, np.vstack([r, r]))
    assert np.allclose(sated[0], 0.3)  # a focused user is not affected
    assert sated[1, 1] < 0.3
    assert sated[1, 0] == pytest.approx(0.3)


def test_truth_answers_each_request_users_appetite(tiny: tuple[object, object]) -> None:
    workspace = tiny[0]
    truth = GroundTruth.load(workspace)  # type: ignore[arg-type]
    ids = truth.request_ids[:5]
    users = truth.world.users.index.get_indexer(truth.requests.column("user_id").to_pylist()[:5])
    assert np.array_equal(truth.appetite(ids), truth.world.users.variety[users])


def test_diversity_params_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="satiation"):
        DiversityParams(satiation=-1.0).validate()
    config = SimulationConfig(diversity=DiversityParams(satiation=0.5))
    assert SimulationConfig.from_dict(config.to_dict()).diversity.satiation == 0.5
