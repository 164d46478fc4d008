"""Pre-ranking end to end on a tiny simulated shop: trained from the logged stream by the CLI,
served by the pipeline, measured by ``eval stages``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from shopsearch.cli import run
from shopsearch.config import RankingSettings, Settings, load_settings
from shopsearch.errors import InvalidInputError
from shopsearch.evaluate.report import Report
from shopsearch.evaluate.suites.stages import StagesConfig, run_stages_suite
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import PolicyParams, SimulationConfig
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index
from shopsearch.training.ranking import train_ranking_bundle

TINY = SimulationConfig(domains=2, products=150, users=80, sessions=300, seed=5)


@pytest.fixture(scope="module")
def shop(lexical_shop: Callable[..., Path]) -> Path:
    settings = (
        '[retrieval]\nsources = ["lexical"]\ncandidates = 60\n[pipeline]\nprerank_keep = 10\n'
    )
    return lexical_shop("prerank", TINY, settings)


def test_the_cli_trains_on_the_logged_stream_and_the_engine_serves_it(shop: Path) -> None:
    assert run(["train", "-w", str(shop), "--stage", "prerank", "--epochs", "1"]) == 0
    ws = Workspace.open(shop)
    assert (current_bundle(ws) / "prerank" / "prerank.safetensors").exists()
    settings = load_settings(shop)
    engine = Engine.load(ws, settings)
    query = ws.table("requests").column("query")[0].as_py()
    response = engine.search(SearchParams(query, domain="us", explain=True))
    (stage,) = [s for s in response.pipeline if s.name == "prerank"]
    assert stage.status == "ran"
    assert "hccp scored" in stage.detail
    assert all(item.stages["prerank.score"] is not None for item in response.items)
    settings.prerank.enabled = False
    off = Engine.load(ws, settings).search(SearchParams(query, domain="us"))
    assert [s.status for s in off.pipeline if s.name == "prerank"] == ["identity"]


def test_a_workspace_without_a_stream_says_how_to_log_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = Workspace.create(tmp_path / "ws")
    unsampled = PolicyParams(stream_sample=0.0)
    simulate(ws, SimulationConfig(domains=1, products=100, users=20, sessions=30, seed=2,
                                  policy=unsampled))  # fmt: skip
    assert ws.table("stream").num_rows == 0
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    build_index(ws, settings)
    argv = ["train", "-w", str(ws.root), "--stage", "prerank"]
    assert run(argv) != 0
    assert "stream_sample" in capsys.readouterr().err.replace("\n", " ")


def test_eval_stages_measures_every_prerank_system(shop: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no ranking model"):
        run_stages_suite(StagesConfig(shop, parts=("prerank",), prerank_keep=10,
                                      prerank_pool=60), say=lambda _m: None)  # fmt: skip
    train_ranking_bundle(Workspace.open(shop), RankingSettings(model="dnn", epochs=1))
    out = tmp_path / "stages.json"
    argv = [
        "eval", "stages", "-w", str(shop), "--parts", "prerank", "--prerank-pool", "60",
        "--prerank-keep", "10", "--prerank-sessions", "40", "--prerank-test-sessions", "15",
        "--prerank-online-sessions", "15", "--prerank-epochs", "1", "--report", str(out),
    ]  # fmt: skip
    assert run(argv) == 0
    report = Report.read(out)
    assert report.primary_metric == "ndcg@10"
    assert set(report.systems) == {
        "shopsearch/hccp", "baseline/prerank-distill", "baseline/prerank-exposed",
        "baseline/no-prerank", "baseline/full-rank",
    }  # fmt: skip
    full = report.systems["baseline/full-rank"]
    assert full["consistency"] == 1.0
    for name, entry in report.systems.items():
        assert 0.0 <= entry["consistency"] <= 1.0, name
        assert entry["cost_ms"] >= 0.0
        assert entry["purchases_per_1k"] >= 0.0
        assert entry["part"]["name"] == "prerank"
    assert report.dataset["prerank/logged_requests"] > 0
