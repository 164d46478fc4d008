"""The allocate stage end to end on a tiny simulated shop: trained from the logs, served
through the pipeline, explained, measured by ``eval stages``; and the stage on a hand-made
state (window, gate)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from shopsearch.catalog.candidates import Candidates, Filters
from shopsearch.config import Settings
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.stages import StagesConfig
from shopsearch.evaluate.suites.stages_allocation import front, gaps, measure
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stages.allocate import ALLOCATION_DIR, AllocateStage
from shopsearch.pipeline.state import QueryInfo, SearchState
from shopsearch.rerank.allocation import MODRLTA
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.training.allocation import train_allocation_bundle

TINY = SimulationConfig(domains=1, products=150, users=60, sessions=250, seed=4)


@pytest.fixture(scope="module")
def shop(lexical_shop: Callable[..., Path]) -> Path:
    return lexical_shop("allocation", TINY)


def _settings(enabled: bool = True) -> Settings:
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    settings.allocation.enabled = enabled
    return settings


def test_trained_from_the_logs_and_served_through_the_pipeline(shop: Path) -> None:
    ws = Workspace.open(shop)
    engine = Engine.load(ws, _settings())
    skipped = {r.name: r for r in engine.search(SearchParams("sofa")).pipeline}["allocate"]
    assert skipped.status == "skipped"
    assert "--stage allocation" in skipped.detail
    bundle = train_allocation_bundle(ws, _settings())
    assert bundle == current_bundle(ws)
    assert (bundle / ALLOCATION_DIR / "config.json").exists()
    engine = Engine.load(ws, _settings())
    response = engine.search(SearchParams("sofa", size=20))
    report = {r.name: r for r in response.pipeline}["allocate"]
    assert report.status == "ran"
    assert "modrl-ta moved" in report.detail
    assert "weights clicks" in report.detail
    off = Engine.load(ws, _settings(enabled=False))
    assert {r.name: r for r in off.search(SearchParams("sofa")).pipeline}["allocate"].status == (
        "skipped"
    )
    # a second training sees the logs after the first as live
    again = train_allocation_bundle(ws, _settings())
    assert again != bundle


def test_the_stage_moves_only_the_window_and_never_above_the_gate(shop: Path) -> None:
    model = MODRLTA.load(current_bundle(Workspace.open(shop)) / ALLOCATION_DIR)
    assert model.stats_ is not None
    new_keys = [k for k, n in zip(model.stats_.keys, model.stats_.new, strict=True) if n][:2]
    old_keys = [k for k, n in zip(model.stats_.keys, model.stats_.new, strict=True) if not n]
    keys = old_keys[:6] + new_keys + old_keys[6:10]
    state = SearchState(SearchParams("x"), Filters(), 20, QueryInfo("x", "x"))
    state.candidates = Candidates(keys=keys, scores=np.arange(12, 0, -1, dtype=np.float32))
    state.gated_from = 8  # the last four were demoted by the relevance gate
    stage = AllocateStage(model)
    stage.model.weights_ = np.array([0.0, 0.0, 1.0])  # exposure only: lift the new items
    outcome = stage.run(state)
    assert outcome.status == "ran"
    assert state.candidates.keys[8:] == keys[8:]
    assert set(state.candidates.keys[:8]) == set(keys[:8])
    assert state.candidates.keys.index(new_keys[0]) < 6
    assert state.columns["allocate.shift"][8:].tolist() == [0.0] * 4
    blended = SearchState(SearchParams("x"), Filters(), 20, QueryInfo("x", "x"))
    blended.candidates = Candidates(keys=keys, scores=np.arange(12, 0, -1, dtype=np.float32))
    outcome = AllocateStage(model, blend_weight=1.0).run(blended)
    assert "blend w=1" in outcome.detail
    assert blended.candidates.keys[:2] == new_keys
    assert blended.columns["allocate.shift"][:2].tolist() == [6.0, 6.0]


def test_eval_stages_part_reports_systems_and_pareto_png(shop: Path, tmp_path: Path) -> None:
    path = tmp_path / "stages.json"
    config = StagesConfig(
        shop,
        report_path=path,
        n_resamples=50,
        allocation_days=2,
        allocation_sessions=15,
        allocation_blends=(0.05, 0.5),
    )
    report = Report(suite="stages/sim", primary_metric="ndcg@10")
    measure(config, report, lambda _m: None)
    assert set(report.systems) == {
        "baseline/no-allocation",
        "baseline/blend-0.05",
        "baseline/blend-0.5",
        "shopsearch/modrl-ta",
    }
    ours = report.systems["shopsearch/modrl-ta"]
    for key in ("ndcg@10", "clicks_per_1k", "purchases_per_1k", "new_item_exposure_per_1k"):
        assert key in ours
        assert key in ours["ci95"]
    assert ours["part"]["name"] == "allocation"
    assert "outside_front" in ours["pareto"]
    assert len(ours["pareto"]["paired_diff_vs"]["baseline/no-allocation"]["purchases_per_1k"]) == 3
    assert len(ours["fits"]["by_day"]) == 2
    assert path.with_name("stages-pareto.png").stat().st_size > 0


def test_front_and_gaps() -> None:
    points = np.array([[10.0, 1.0], [9.0, 3.0], [8.0, 2.0], [7.0, 5.0]])
    assert front(points).tolist() == [[7.0, 5.0], [9.0, 3.0], [10.0, 1.0]]
    exposure_gap, purchase_gap = gaps(np.array([9.0, 4.0]), points)
    assert exposure_gap == pytest.approx(1.0)
    assert purchase_gap == pytest.approx(1.0)
    inside = gaps(np.array([8.0, 2.0]), points)
    assert inside[0] < 0
    assert inside[1] < 0
