"""The rerank stage, ``shopsearch train --stage rerank`` and the ``rerank`` part of ``eval
stages`` on a tiny simulated shop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shopsearch.catalog.candidates import Candidates, Filters
from shopsearch.catalog.lookup import ProductLookup
from shopsearch.cli import run
from shopsearch.config import load_settings
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.stages import PARTS, StagesConfig
from shopsearch.evaluate.suites.stages_rerank import alpha_ndcg, coverage, measure, ndcg
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stages.rerank import RerankStage
from shopsearch.pipeline.state import QueryInfo, SearchState
from shopsearch.rerank.diversity.mmr import MMRReranker
from shopsearch.simulate import SimulationConfig, simulate
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-market simulated shop with a lexical index."""
    root = tmp_path_factory.mktemp("rerank") / "ws"
    simulate(
        Workspace.create(root),
        SimulationConfig(domains=1, products=150, users=30, sessions=250, seed=3),
    )
    (root / "shopsearch.toml").write_text('[retrieval]\nsources = ["lexical"]\n')
    assert run(["index", "-w", str(root)]) == 0
    return root


def _a_logged_search(root: Path) -> tuple[str, str]:
    """A logged query with a full page of results, and its user."""
    engine = _engine(root, enabled=False)
    for row in Workspace.open(root).table("requests").to_pylist():
        if len(engine.search(SearchParams(row["query"], size=10)).items) == 10:
            return row["query"], row["user_id"]
    raise AssertionError("no logged query has 10 results")


def _engine(root: Path, **rerank: object) -> Engine:
    settings = load_settings(root)
    settings = settings.model_copy(update={"rerank": settings.rerank.model_copy(update=rerank)})
    return Engine.load(Workspace.open(root), settings)


def _report(engine: Engine, query: str, user: str) -> tuple[str, str]:
    response = engine.search(SearchParams(query, user_id=user, size=10, explain=True))
    stage = next(s for s in response.pipeline if s.name == "rerank")
    return stage.status, stage.detail


def test_train_stage_rerank_publishes_a_model_the_stage_serves(shop: Path) -> None:
    query, user = _a_logged_search(shop)
    assert _report(_engine(shop), query, user)[0] == "identity"  # no model yet
    assert run(["train", "-w", str(shop), "--stage", "rerank", "--epochs", "2"]) == 0
    bundle = current_bundle(Workspace.open(shop))
    assert (bundle / "rerank" / "config.json").exists()
    assert not list((bundle / "rerank").glob("*.pkl"))
    engine = _engine(shop)
    status, detail = _report(engine, query, user)
    assert status == "ran"
    assert "podm-mi re-ordered" in detail
    response = engine.search(SearchParams(query, user_id=user, size=10, explain=True))
    assert response.items
    assert "rerank.utility" in response.items[0].stages


def test_the_baselines_need_no_model_and_none_skips_the_stage(shop: Path) -> None:
    query, user = _a_logged_search(shop)
    for method in ("mmr", "dpp"):
        status, detail = _report(_engine(shop, method=method), query, user)
        assert status == "ran"
        assert detail.startswith(method)
    assert _report(_engine(shop, method="none"), query, user)[0] == "skipped"
    assert _report(_engine(shop, enabled=False), query, user)[0] == "skipped"


def test_the_stage_never_lifts_candidates_the_gate_demoted() -> None:
    products = pa.table(
        {
            "domain": ["d"] * 4,
            "product_id": ["a", "b", "c", "x"],
            "title": ["t"] * 4,
            "brand": ["acme", "acme", "acme", "bolt"],
            "category": [["Home", "Sofas"]] * 4,
            "price": [1.0] * 4,
            "in_stock": [True] * 4,
        }
    )
    stage = RerankStage(MMRReranker(0.0), ProductLookup(products), depth=10)
    keys = [("d", "a"), ("d", "b"), ("d", "c"), ("d", "x")]
    state = SearchState(SearchParams("sofa"), Filters(), 10, QueryInfo("sofa", "sofa"))
    state.candidates = Candidates(keys, np.array([4, 3, 2, 1], dtype=np.float32))
    state.gated_from = 3  # "x" was demoted: it stays last although it is the diverse one
    outcome = stage.run(state)
    assert outcome.status == "ran"
    assert state.candidates.keys[-1] == ("d", "x")
    state.gated_from = None
    state.candidates = Candidates(keys, np.array([4, 3, 2, 1], dtype=np.float32))
    state.columns = {}
    stage.run(state)
    assert state.candidates.keys[1] == ("d", "x")
    assert np.isfinite(state.columns["rerank.utility"]).all()


def test_the_metrics_on_a_hand_made_list() -> None:
    grades = np.array([3, 3, 0, 2])
    order = np.array([0, 1, 2, 3])
    assert ndcg(grades, np.array([0, 1, 3, 2])) == pytest.approx(1.0)
    assert ndcg(grades, order) < 1.0
    covered = [[1, 10], [1, 10], [], [2, 20]]
    weight = grades / 3.0
    diverse = np.array([0, 3, 1, 2])
    assert alpha_ndcg(diverse, covered, weight) == pytest.approx(1.0)
    assert alpha_ndcg(order, covered, weight) < 1.0
    assert alpha_ndcg(order, covered, weight, alpha=0.0) < 1.0  # the grade-2 one comes late
    assert coverage(order, covered, k=2) == pytest.approx(0.5)
    assert coverage(diverse, covered, k=2) == pytest.approx(1.0)


def test_the_rerank_part_reports_every_system(shop: Path) -> None:
    assert PARTS["rerank"] == "stages_rerank"
    report = Report(suite="stages/sim", primary_metric="ndcg@10")
    config = StagesConfig(workspace=shop, rerank_sessions=8, n_resamples=20)
    measure(config, report, lambda _message: None)
    for name in ("baseline/no-rerank", "baseline/mmr", "baseline/dpp", "shopsearch/podm-mi"):
        entry = report.systems[name]
        for metric in ("ndcg@10", "alpha_ndcg@10", "ild", "coverage"):
            assert 0.0 <= entry[metric] <= 1.0
        assert entry["part"]["name"] == "rerank"
    none = report.systems["baseline/no-rerank"]["vs_no_rerank"]["ndcg@10"]
    assert none["mean"] == 0.0
    assert "strength_appetite_spearman" in report.systems["shopsearch/podm-mi"]["model"]
