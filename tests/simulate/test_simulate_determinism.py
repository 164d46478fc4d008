"""The same seed gives identical tables; another seed gives other data."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from shopsearch.simulate import SimulationConfig, simulate
from shopsearch.store.workspace import Workspace

TABLE_NAMES = ("domains", "products", "requests", "impressions", "interactions")
CONFIG = SimulationConfig(domains=2, products=150, users=60, sessions=120, seed=3)


def _run(root: Path, config: SimulationConfig) -> Workspace:
    workspace = Workspace.create(root)
    simulate(workspace, config)
    return workspace


def test_same_seed_same_tables(tmp_path: Path) -> None:
    first = _run(tmp_path / "a", CONFIG)
    second = _run(tmp_path / "b", CONFIG)
    for name in TABLE_NAMES:
        assert first.table(name).equals(second.table(name)), name
    for sub in ("requests/part-00000.parquet", "users.parquet", "products.parquet"):
        a = pq.read_table(first.root / "ground_truth" / sub)
        b = pq.read_table(second.root / "ground_truth" / sub)
        assert a.equals(b), sub


def test_chunking_keeps_the_world_and_the_schema(tmp_path: Path) -> None:
    chunked = _run(
        tmp_path / "c",
        SimulationConfig(
            domains=2, products=150, users=60, sessions=120, seed=3, chunk_sessions=50
        ),
    )
    whole = _run(tmp_path / "w", CONFIG)
    assert chunked.table("products").equals(whole.table("products"))
    assert len(chunked.parts("requests")) == 3
    sessions = chunked.connect().execute("SELECT count(DISTINCT session_id) FROM requests")
    assert sessions.fetchone() == (120,)


def test_other_seed_other_data(tmp_path: Path) -> None:
    first = _run(tmp_path / "a", CONFIG)
    other = _run(
        tmp_path / "b", SimulationConfig(domains=2, products=150, users=60, sessions=120, seed=4)
    )
    assert not first.table("products").equals(other.table("products"))
    assert not first.table("requests").equals(other.table("requests"))
