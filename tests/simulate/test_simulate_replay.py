"""Replaying policies: a perfect policy beats a random one; same seed, same users and needs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.simulate import (
    GroundTruth,
    LexicalNoisePolicy,
    RandomPolicy,
    Ranking,
    RankingPolicy,
    ReplayResult,
    RequestBatch,
    World,
    planned_truth,
    replay,
)
from shopsearch.store.workspace import Workspace

SESSIONS = 600
Pair = tuple[ReplayResult, ReplayResult]


class OraclePolicy(RankingPolicy):
    """Ranks by true grade, then purchase propensity (cheats with the ground truth)."""

    name = "oracle"

    def __init__(self, truth: GroundTruth, world: World) -> None:
        self.truth = truth
        table = world.catalog.table
        frame = pd.DataFrame(
            {"domain": table.column("domain").to_pylist(), "id": table["product_id"].to_pylist()}
        )
        self.ids = {d: g["id"].tolist() for d, g in frame.groupby("domain")}

    def rank(self, batch: RequestBatch, k: int) -> Ranking:
        out = []
        for request, domain in zip(batch.request_ids, batch.domains, strict=True):
            ids = self.ids[domain]
            funnel = self.truth.funnel([request] * len(ids), [(domain, i) for i in ids])
            order = np.lexsort((-funnel.purchase_propensity, -funnel.grade))[:k]
            out.append([ids[i] for i in order])
        return Ranking(out)


class FixedPolicy(RankingPolicy):
    """Returns the same product ids for every request (to test validation)."""

    name = "fixed"

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def rank(self, batch: RequestBatch, k: int) -> Ranking:
        return Ranking([self.ids for _ in batch.request_ids], [[1.0] * len(self.ids)] * len(batch))


@pytest.fixture(scope="module")
def oracle_and_random(world3: World) -> Pair:
    truth = planned_truth(world3, SESSIONS, seed=1)
    oracle = replay(world3, OraclePolicy(truth, world3), SESSIONS, seed=1, keep_logs=True)
    random = replay(world3, RandomPolicy(world3.catalog.table), SESSIONS, seed=1, keep_logs=True)
    return oracle, random


def test_perfect_policy_beats_random(oracle_and_random: Pair) -> None:
    oracle, random = oracle_and_random
    best, worst = oracle.summary.total, random.summary.total
    assert best.sessions == worst.sessions == SESSIONS
    assert best.clicks > 1.5 * worst.clicks
    assert best.purchases > worst.purchases
    assert best.per_1k_requests()["gmv"] > worst.per_1k_requests()["gmv"]
    assert best.requests < worst.requests  # satisfied users refine less


def test_same_seed_same_users_and_needs(oracle_and_random: Pair) -> None:
    first = []
    for result in oracle_and_random:
        assert result.logs is not None
        requests = result.logs.requests
        ids = pd.Series(requests["request_id"].to_pylist())
        first.append(requests.filter(ids.str.endswith("-1").to_numpy()))
    for column in ("request_id", "user_id", "domain", "query", "timestamp"):
        assert first[0][column].equals(first[1][column]), column


def test_replay_is_deterministic(world3: World) -> None:
    policy = LexicalNoisePolicy(world3.catalog.table)
    a = replay(world3, policy, 200, seed=9, keep_logs=True)
    b = replay(world3, LexicalNoisePolicy(world3.catalog.table), 200, seed=9, keep_logs=True)
    assert a.logs is not None
    assert b.logs is not None
    assert a.logs.impressions.equals(b.logs.impressions)
    assert a.logs.interactions.equals(b.logs.interactions)
    c = replay(world3, policy, 200, seed=10)
    assert c.logs is None
    assert c.summary.total.requests != a.summary.total.requests or not np.isclose(
        c.summary.total.gmv, a.summary.total.gmv
    )


def test_replay_truth_covers_replayed_requests(oracle_and_random: Pair) -> None:
    _, random = oracle_and_random
    assert random.logs is not None
    logged = set(random.logs.requests["request_id"].to_pylist())
    assert set(random.truth.request_ids) == logged
    assert all(r.startswith("r1-") for r in logged)


def test_policy_output_is_checked(world3: World) -> None:
    table = world3.catalog.table
    gb = [
        p
        for d, p in zip(table["domain"].to_pylist(), table["product_id"].to_pylist(), strict=True)
        if d == "gb"
    ]
    us = set(
        p
        for d, p in zip(table["domain"].to_pylist(), table["product_id"].to_pylist(), strict=True)
        if d == "us"
    )
    foreign = [p for p in gb if p not in us][:1]
    with pytest.raises(InvalidInputError, match="does not carry"):
        replay(world3, FixedPolicy(foreign), 30, seed=0)
    with pytest.raises(InvalidInputError, match="not in the catalog"):
        replay(world3, FixedPolicy(["nope"]), 30, seed=0)
    with pytest.raises(InvalidInputError, match="at most k=20"):
        replay(world3, FixedPolicy(sorted(us)[:21]), 30, seed=0)
    with pytest.raises(InvalidInputError, match="n_sessions"):
        replay(world3, FixedPolicy([]), 0, seed=0)


def test_short_rankings_and_scores_are_logged(world3: World) -> None:
    table = world3.catalog.table
    everywhere = set.intersection(
        *(
            {
                p
                for d, p in zip(
                    table["domain"].to_pylist(), table["product_id"].to_pylist(), strict=True
                )
                if d == dom
            }
            for dom in world3.domain_ids
        )
    )
    ids = sorted(everywhere)[:3]
    result = replay(world3, FixedPolicy(ids), 40, seed=2, keep_logs=True)
    assert result.logs is not None
    impressions = result.logs.impressions
    assert set(impressions["position"].to_pylist()) == {1, 2, 3}
    assert set(impressions["scores"].to_pylist()) == {'{"fixed":1}'}


def test_replay_into_a_workspace(world3: World, tmp_path: Path) -> None:
    output = Workspace.create(tmp_path / "ab")
    result = replay(world3, RandomPolicy(world3.catalog.table), 50, seed=4, output=output)
    assert output.count("requests") == result.summary.total.requests
    assert output.count("products") == world3.catalog.table.num_rows
    truth = GroundTruth.load(output)
    assert len(truth.request_ids) == result.summary.total.requests
    again = replay(output, RandomPolicy(world3.catalog.table), 50, seed=5, output=output)
    assert output.count("requests") == result.summary.total.requests + again.summary.total.requests
    with pytest.raises(WorkspaceError, match="already holds the replay of seed 4"):
        replay(output, RandomPolicy(world3.catalog.table), 50, seed=4, output=output)
