"""``train --stage relevance`` on a tiny simulated shop (a tiny BERT stands in for MiniLM): the
labelled pairs, the published bundle the engine serves, the ranking feature ``relevance``."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from shopsearch.cli import run
from shopsearch.config import RankingSettings, RelevanceSettings, RetrievalSettings, Settings
from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.ranking.feature_names import RELEVANCE
from shopsearch.relevance import cross_encoder
from shopsearch.relevance.cross_encoder import TeacherConfig
from shopsearch.relevance.distill import DistillConfig
from shopsearch.relevance.student import StudentConfig
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index
from shopsearch.training.ranking import train_ranking_bundle
from shopsearch.training.relevance import (
    CHECKPOINT_DIR,
    LOG_GRADES,
    UNFITTED,
    labelled_pairs,
    train_relevance_bundle,
)

TINY = SimulationConfig(domains=1, products=100, users=30, sessions=80, seed=5)
FAST = DistillConfig(
    teacher=TeacherConfig(max_length=24, batch_size=32, epochs=1, checkpoint_every=20, threads=1),
    student=StudentConfig(buckets=2**12, dim=16, hidden=32, epochs=2, batch_size=64),
)


def _settings(**relevance: object) -> Settings:
    return Settings(
        retrieval=RetrievalSettings(sources=["lexical"]),
        relevance=RelevanceSettings.model_validate({"max_pairs": 3000, **relevance}),
    )


def _shop(root: Path) -> Workspace:
    ws = Workspace.create(root)
    simulate(ws, TINY)
    build_index(ws, _settings())
    return ws


def test_logged_outcomes_and_judgments_become_graded_pairs(tmp_path: Path) -> None:
    ws = _shop(tmp_path / "ws")
    table = ws.table("products")
    known = set(zip(table["domain"].to_pylist(), table["product_id"].to_pylist(), strict=True))
    logged, source = labelled_pairs(ws, known, 10_000)
    assert source == "events"
    assert set(logged.grades) <= {0.0, *LOG_GRADES.values()}
    assert 0.0 in logged.grades
    assert LOG_GRADES["click"] in logged.grades
    assert logged.relevant_at == LOG_GRADES["click"]
    assert len(labelled_pairs(ws, known, 50)[0].grades) <= 50  # whole queries up to the cap
    domain, pid = sorted(known)[0]
    judgments = {"domain": [domain] * 3, "query": ["a", "b", "c"], "product_id": [pid] * 3,
                 "grade": [1.0, 2.0, 3.0]}  # fmt: skip
    ws.append("judgments", pa.table(judgments))
    judged, source = labelled_pairs(ws, known, 10_000)
    assert source == "judgments"
    assert judged.grades == [0.0, 0.5, 1.0]
    assert judged.relevant_at == 0.5


def test_no_judgments_and_no_logs_is_a_clear_error(tmp_path: Path) -> None:
    ws = _shop(tmp_path / "ws")
    bare = Workspace.create(tmp_path / "bare")
    bare.append("products", ws.table("products"))
    build_index(bare, _settings())
    with pytest.raises(InvalidInputError, match="no judgments and no logged impressions"):
        train_relevance_bundle(bare, _settings(), config=FAST)
    assert run(["train", "-w", str(bare.root), "--stage", "relevance"]) != 0


def test_trained_relevance_serves_and_feeds_the_ranking_model(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cross_encoder, "minilm_folder", lambda: tiny_bert)
    ws = _shop(tmp_path / "ws")
    ranking = RankingSettings(epochs=1)
    train_ranking_bundle(ws, ranking, settings=_settings())  # before relevance: no feature
    messages: list[str] = []
    bundle = train_relevance_bundle(ws, _settings(), say=messages.append, config=FAST)
    assert {p.name for p in (bundle / "relevance").iterdir()} >= {
        "gate.json", "student.json", "weights.safetensors", "report.json"
    }  # fmt: skip
    assert (bundle / "ranking").is_dir()  # the other stages are copied
    assert not (ws.root / CHECKPOINT_DIR).exists()
    assert any("labelled pairs" in m and "(events)" in m for m in messages)
    assert any("side scorers for stacking: none" in m for m in messages)
    report = orjson.loads((bundle / "relevance" / "report.json").read_bytes())
    assert report["unlabeled_pairs"] > 0  # retrieval's top candidates of the queries
    assert report["gate"] == UNFITTED  # trained on logs: no threshold fitted on clicks
    assert orjson.loads((bundle / "relevance" / "gate.json").read_bytes())["threshold"] == 0.0

    query = str(ws.connect().execute("SELECT query FROM requests LIMIT 1").fetchone()[0])
    engine = Engine.load(ws, _settings())
    assert engine.ranking is not None
    assert engine.ranking.pipeline_features == ()
    response = engine.search(SearchParams(query, size=50, explain=True))
    stages = {s.name: s for s in response.pipeline}
    assert stages["relevance"].status == "ran"
    assert "student scored" in stages["relevance"].detail
    assert "not fitted: no judgments" in stages["relevance"].detail
    assert stages["rank"].status == "ran"  # a model trained without the feature still serves
    assert all(0.0 <= (item.stages["relevance"] or 0.0) <= 1.0 for item in response.items)

    train_ranking_bundle(ws, ranking, settings=_settings())  # now with the feature
    engine = Engine.load(ws, _settings())
    assert engine.ranking is not None
    assert RELEVANCE in engine.ranking.ranker.encoder.dense_names_
    assert engine.ranking.pipeline_features == (RELEVANCE,)
    response = engine.search(SearchParams(query, size=50, explain=True))
    assert {s.name: s.status for s in response.pipeline}["rank"] == "ran"
    assert "rank.value" in response.items[0].stages
    with pytest.raises(WorkspaceError, match="trained with the relevance feature"):
        Engine.load(ws, _settings(enabled=False))


def test_judgments_fit_the_gate(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cross_encoder, "minilm_folder", lambda: tiny_bert)
    ws = _shop(tmp_path / "ws")
    products = ws.table("products").to_pylist()[:40]
    rows = [(p["domain"], p["title"].split()[-1].lower(), p["product_id"], float(1 + i % 3))
            for i, p in enumerate(products)]  # fmt: skip
    ws.append("judgments", pa.table({
        "domain": [r[0] for r in rows], "query": [r[1] for r in rows],
        "product_id": [r[2] for r in rows], "grade": [r[3] for r in rows],
    }))  # fmt: skip
    bundle = train_relevance_bundle(ws, _settings(), config=FAST)
    gate = orjson.loads((bundle / "relevance" / "gate.json").read_bytes())
    assert gate["fitted_on"] > 0
    report = orjson.loads((bundle / "relevance" / "report.json").read_bytes())
    assert report["trained_on"] == "judgments"
    assert "gate" not in report
    response = Engine.load(ws, _settings()).search(SearchParams(rows[0][1], explain=True))
    detail = {s.name: s for s in response.pipeline}["relevance"].detail
    assert f"fitted on {gate['fitted_on']} judged pairs" in detail
