"""Fixtures of the ranking tests: a tiny simulated workspace and its samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.samples import Samples, build_samples, split_by_time
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.workspace import Workspace

TINY = SimulationConfig(domains=2, products=150, users=80, sessions=300, seed=3)


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ranking-ws")
    simulate(Workspace.create(root), TINY)
    return root


@pytest.fixture(scope="session")
def tiny_samples(tiny_workspace: Path) -> Samples:
    return build_samples(Workspace.open(tiny_workspace).connect())


@pytest.fixture(scope="session")
def tiny_split(tiny_samples: Samples) -> tuple[Samples, Samples]:
    return split_by_time(tiny_samples, 0.25)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_split: tuple[Samples, Samples]) -> FeatureEncoder:
    return FeatureEncoder().fit(tiny_split[0])
