"""Shared tiny simulations (built once per test session, in temporary directories)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsearch.simulate import SimulationConfig, SimulationSummary, World, generate_world, simulate
from shopsearch.store.workspace import Workspace

TINY = SimulationConfig(domains=2, products=200, users=100, sessions=300, seed=11)


@pytest.fixture(scope="session")
def tiny_config() -> SimulationConfig:
    """2 domains, 200 products, 100 users, 300 sessions."""
    return TINY


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, SimulationSummary]:
    """A workspace simulated with :data:`TINY`, and its summary."""
    workspace = Workspace.create(tmp_path_factory.mktemp("tiny") / "ws")
    return workspace, simulate(workspace, TINY)


@pytest.fixture(scope="session")
def world3() -> World:
    """A 3-market world (no sessions) for replays."""
    return generate_world(SimulationConfig(domains=3, products=300, users=600, sessions=0, seed=5))


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder shared by a test module's workspaces."""
    return tmp_path_factory.mktemp("shared")
