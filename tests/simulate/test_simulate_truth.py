"""Ground truth answers for shown and unshown pairs, and agrees with the logged behaviour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.simulate import GroundTruth, SimulationSummary
from shopsearch.store.workspace import Workspace


@pytest.fixture(scope="module")
def truth(tiny: tuple[Workspace, SimulationSummary]) -> GroundTruth:
    return GroundTruth.load(tiny[0])


def test_truth_knows_every_logged_request(
    tiny: tuple[Workspace, SimulationSummary], truth: GroundTruth
) -> None:
    logged = set(tiny[0].table("requests", ["request_id"]).column("request_id").to_pylist())
    assert set(truth.request_ids) == logged


def test_shown_pairs_have_grades_and_propensities(
    tiny: tuple[Workspace, SimulationSummary], truth: GroundTruth
) -> None:
    rows = (
        tiny[0]
        .connect()
        .execute(
            "SELECT i.request_id, r.domain, i.product_id FROM impressions i "
            "JOIN requests r USING (request_id)"
        )
        .fetchall()
    )
    ids = [r[0] for r in rows]
    keys = [(r[1], r[2]) for r in rows]
    grades = truth.relevance(ids, keys)
    propensity = truth.purchase_propensity(ids, keys)
    assert grades.shape == (len(rows),)
    assert set(np.unique(grades).tolist()) == {0, 1, 2, 3}
    assert ((propensity >= 0) & (propensity <= 1)).all()
    assert propensity[grades == 3].mean() > propensity[grades == 0].mean()


def test_unshown_pairs_are_answered(
    tiny: tuple[Workspace, SimulationSummary], truth: GroundTruth
) -> None:
    workspace = tiny[0]
    requests = truth.requests.slice(0, 50).to_pylist()
    products = workspace.table("products", ["domain", "product_id", "in_stock"]).to_pylist()
    for request in requests:
        same = [
            (p["domain"], p["product_id"]) for p in products if p["domain"] == request["domain"]
        ]
        grades = truth.relevance([request["request_id"]] * len(same), same)
        assert grades.max() == 3  # the wanted product is always a perfect match
        target = (request["domain"], request["target_product_id"])
        assert truth.relevance([request["request_id"]], [target]).tolist() == [3]
        assert (grades == 0).any()  # other categories are irrelevant


def test_propensity_is_zero_out_of_stock_or_in_another_domain(
    tiny: tuple[Workspace, SimulationSummary], truth: GroundTruth
) -> None:
    products = tiny[0].table("products", ["domain", "product_id", "in_stock"]).to_pylist()
    request = truth.requests.slice(0, 1).to_pylist()[0]
    other = [(p["domain"], p["product_id"]) for p in products if p["domain"] != request["domain"]]
    assert not truth.purchase_propensity([request["request_id"]] * len(other), other).any()
    sold_out = [
        (p["domain"], p["product_id"])
        for p in products
        if p["domain"] == request["domain"] and not p["in_stock"]
    ]
    assert sold_out
    assert not truth.purchase_propensity([request["request_id"]] * len(sold_out), sold_out).any()


def test_relevant_items_are_clicked_more(
    tiny: tuple[Workspace, SimulationSummary], truth: GroundTruth
) -> None:
    rows = (
        tiny[0]
        .connect()
        .execute(
            """
            SELECT i.request_id, r.domain, i.product_id, c.request_id IS NOT NULL
            FROM impressions i JOIN requests r USING (request_id)
            LEFT JOIN (SELECT DISTINCT request_id, product_id FROM interactions
                       WHERE kind = 'click') c USING (request_id, product_id)
            """
        )
        .fetchall()
    )
    grades = truth.relevance([r[0] for r in rows], [(r[1], r[2]) for r in rows])
    clicked = np.array([r[3] for r in rows])
    ctr = [clicked[grades == g].mean() for g in range(4)]
    assert ctr[3] > ctr[2] > ctr[0]
    assert ctr[0] > 0  # irrelevant items get clicked sometimes
    assert ctr[3] < 0.5  # relevant items get skipped
    assert ctr == pytest.approx(tiny[1].ctr_by_grade)


def test_bad_inputs_fail_clearly(truth: GroundTruth) -> None:
    request = truth.request_ids[0]
    with pytest.raises(InvalidInputError, match="not in the ground truth"):
        truth.relevance(["nope"], [("us", "p00000")])
    with pytest.raises(InvalidInputError, match="not in the simulated catalog"):
        truth.relevance([request], [("us", "p99999")])
    with pytest.raises(InvalidInputError, match="not simulated"):
        truth.relevance([request], [("zz", "p00000")])
    with pytest.raises(InvalidInputError, match="one product key per request"):
        truth.relevance([request, request], [("us", "p00000")])
    assert truth.relevance([], []).shape == (0,)


def test_workspace_without_truth_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="no simulator ground truth"):
        GroundTruth.load(Workspace.create(tmp_path / "empty"))


def test_truth_keeps_each_query_as_typed_and_as_meant(tmp_path):
    """Query understanding is scored against what the user meant to type."""
    from shopsearch.simulate.api import simulate
    from shopsearch.simulate.config import SimulationConfig
    from shopsearch.simulate.truth import read_requests
    from shopsearch.store.workspace import Workspace

    ws = Workspace.create(tmp_path / "ws")
    simulate(ws, SimulationConfig(domains=1, products=100, users=40, sessions=400, seed=4))
    truth = read_requests(ws.root / "ground_truth").to_pandas()
    logged = dict(ws.connect().execute("SELECT request_id, query FROM requests").fetchall())
    shown = truth[truth["request_id"].isin(list(logged))]
    assert (shown["query"] == shown["request_id"].map(logged)).all()
    assert shown["typo"].any()
    typo = shown[shown["typo"]]
    assert (typo["query"] != typo["query_clean"]).all()
    plain = shown[~shown["typo"] & ~shown["abbreviated"]]
    assert (plain["query"] == plain["query_clean"]).all()
