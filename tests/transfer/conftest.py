"""Fixtures of the transfer tests: a tiny simulated two-market log, split by time."""

from __future__ import annotations

from pathlib import Path

import pytest

from shopsearch.ranking.features import FeatureEncoder
from shopsearch.ranking.samples import Samples, build_samples, split_by_time
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import DiversityParams, SimulationConfig
from shopsearch.store.workspace import Workspace

# Without the users' appetite for variety (issue 16): the logs these tests were written against
# (the Wasserstein test's margin is tuned to them; satiation is not what they test).
TWO_MARKETS = SimulationConfig(
    domains=2,
    products=150,
    users=80,
    sessions=300,
    seed=5,
    diversity=DiversityParams(satiation=0.0),
)


@pytest.fixture(scope="session")
def two_domain_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("transfer-ws")
    simulate(Workspace.create(root), TWO_MARKETS)
    return root


@pytest.fixture(scope="session")
def two_domain_split(two_domain_workspace: Path) -> tuple[Samples, Samples]:
    samples = build_samples(Workspace.open(two_domain_workspace).connect())
    return split_by_time(samples, 0.25)


@pytest.fixture(scope="session")
def domains(two_domain_split: tuple[Samples, Samples]) -> tuple[str, str]:
    """``(source, target)``: the domain with more rows, then the other."""
    counts = two_domain_split[0].rows["domain"].value_counts()
    assert len(counts) == 2
    return str(counts.index[0]), str(counts.index[1])


@pytest.fixture(scope="session")
def two_domain_encoder(two_domain_split: tuple[Samples, Samples]) -> FeatureEncoder:
    return FeatureEncoder().fit(two_domain_split[0])
