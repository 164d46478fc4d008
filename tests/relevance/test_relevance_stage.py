"""The relevance stage: the student scores every candidate, the gate demotes, drops or only
scores those below its threshold, and ``--explain`` shows both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from shopsearch.catalog.candidates import Candidates, Filters
from shopsearch.cli import run
from shopsearch.config import RelevanceSettings, RetrievalSettings, Settings
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.request import SearchParams as Params
from shopsearch.pipeline.stages.prerank import PrerankStage
from shopsearch.pipeline.state import QueryInfo, SearchState
from shopsearch.relevance.distill import RelevanceGate
from shopsearch.relevance.gate import gate_order
from shopsearch.relevance.serving import ProductScorer, RelevanceModel, relevance_text
from shopsearch.relevance.student import BERT2DNNStudent, StudentConfig
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["1", "2", "3", "4", "5", "6"],
        "title": [
            "Grey linen sofa",
            "Grey oak desk",
            "Grey table lamp",
            "Leather sofa bed",
            "Grey wool rug",
            "Grey corner sofa",
        ],
        "brand": ["Acme", "Bolt", "Acme", "Acme", "Bolt", "Bolt"],
        "category": [
            "Furniture > Sofas",
            "Furniture > Desks",
            "Lighting > Lamps",
            "Furniture > Sofas",
            "Rugs > Wool",
            "Furniture > Sofas",
        ],
        "price": [499.0, 199.0, 59.0, 899.0, 120.0, 650.0],
    }
)
THINGS = ["sofa", "desk", "lamp", "rug"]
SMALL = StudentConfig(buckets=2**12, dim=16, hidden=32, epochs=60, batch_size=16, lr=1e-2)


@pytest.fixture(scope="module")
def student() -> BERT2DNNStudent:
    """A student taught by a stand-in teacher: 0.95 when the product is the query's thing."""
    rows = zip(PRODUCTS["title"], PRODUCTS["brand"], PRODUCTS["category"], strict=True)
    texts = [relevance_text(t, b, c.split(" > ")) for t, b, c in rows]
    queries, pairs, scores = [], [], []
    for thing in THINGS:
        for query in (thing, f"grey {thing}"):
            for text in texts:
                queries.append(query)
                pairs.append(text)
                scores.append(0.95 if thing in text.lower() else 0.05)
    return BERT2DNNStudent(SMALL).fit(queries, pairs, scores)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, student: BERT2DNNStudent) -> Path:
    """The products, lexical-indexed, with a relevance model written into the bundle."""
    root = tmp_path_factory.mktemp("relevance-stage") / "ws"
    csv = root.parent / "products.csv"
    PRODUCTS.to_csv(csv, index=False)
    assert run(["ingest", "products", str(csv), "-w", str(root), "--add-domains"]) == 0
    (root / "shopsearch.toml").write_text('[retrieval]\nsources = ["lexical"]\n')
    assert run(["index", "-w", str(root)]) == 0
    bundle = current_bundle(Workspace.open(root))
    RelevanceModel(student, RelevanceGate(0.5, 24)).save(bundle / "relevance")
    return root


def _settings(**relevance: object) -> Settings:
    return Settings(
        retrieval=RetrievalSettings(sources=["lexical"]),
        relevance=RelevanceSettings.model_validate(relevance),
    )


def _search(root: Path, settings: Settings, query: str = "grey sofa") -> tuple[list[str], dict[
    str, float
], str]:  # fmt: skip
    response = Engine.load(Workspace.open(root), settings).search(
        SearchParams(query, size=20, explain=True)
    )
    stage = {s.name: s for s in response.pipeline}["relevance"]
    assert stage.status == "ran"
    scores = {i.product_id: i.stages["relevance"] for i in response.items}
    assert all(isinstance(v, float) for v in scores.values())
    return [i.product_id for i in response.items], scores, stage.detail  # type: ignore[return-value]


def test_gate_order_keeps_demotes_drops() -> None:
    scores = [0.9, 0.1, 0.6, 0.2, 0.7]
    order, below = gate_order(scores, 0.5, "demote")
    assert (order.tolist(), below) == ([0, 2, 4, 1, 3], 2)
    assert gate_order(scores, 0.5, "drop")[0].tolist() == [0, 2, 4]
    assert gate_order(scores, 0.5, "off")[0].tolist() == [0, 1, 2, 3, 4]
    assert gate_order(scores, 0.0, "drop")[1] == 0


def test_the_student_scores_every_candidate_and_the_gate_orders_them(workspace: Path) -> None:
    plain, scores, detail = _search(workspace, _settings(gate="off"))
    assert "gate off at 0.500 (fitted on 24 judged pairs)" in detail
    assert len(plain) >= 5  # grey desk, lamp, rug match the word "grey"
    sofas = [p for p in plain if p in {"1", "4", "6"}]
    others = [p for p in plain if p not in {"1", "4", "6"}]
    assert min(scores[p] for p in sofas) > max(scores[p] for p in others)  # the student learned
    threshold = float(np.median(sorted(scores.values())))
    below = [p for p in plain if scores[p] < threshold]
    assert 0 < len(below) < len(plain)
    above = [p for p in plain if scores[p] >= threshold]

    demoted, demoted_scores, detail = _search(workspace, _settings(threshold=threshold))
    assert demoted == above + below  # each group in its retrieval order
    assert demoted_scores == scores
    assert f"{len(below)} demoted below the other {len(above)}" in detail
    assert "set in [relevance] threshold" in detail

    dropped, _, detail = _search(workspace, _settings(gate="drop", threshold=threshold))
    assert dropped == above
    assert f"{len(below)} dropped" in detail

    kept, _, detail = _search(workspace, _settings(gate="off", threshold=threshold))
    assert kept == plain
    assert f"{len(below)} below, not moved" in detail


def test_off_or_absent_is_the_identity_with_a_note(workspace: Path, tmp_path: Path) -> None:
    response = Engine.load(Workspace.open(workspace), _settings(enabled=False)).search(
        SearchParams("grey sofa", explain=True)
    )
    stage = {s.name: s for s in response.pipeline}["relevance"]
    assert (stage.status, stage.detail) == (
        "identity", "[relevance] enabled = false: candidates not scored"
    )  # fmt: skip
    assert all("relevance" not in item.stages for item in response.items)
    engine = Engine.load(Workspace.open(workspace), _settings())
    bare = Engine(engine.retrieval, engine.products, _settings())  # no bundle: no model
    stage = {s.name: s for s in bare.search(SearchParams("sofa")).pipeline}["relevance"]
    assert stage.status == "identity"
    assert "no relevance model in this bundle" in stage.detail


def test_explain_shows_the_score_and_the_gate(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run(["search", "grey sofa", "-w", str(workspace), "--explain"]) == 0
    captured = capsys.readouterr()
    out = " ".join((captured.out + captured.err).split())
    assert "relevance ran" in out
    assert "gate demote at 0.500" in out
    assert "relevance=" in out
    # --json prints the body GET /search answers
    assert run(["search", "grey sofa", "-w", str(workspace), "--explain", "--json"]) == 0
    body = orjson.loads(capsys.readouterr().out)
    stage = {s["name"]: s for s in body["pipeline"]}["relevance"]
    assert stage["status"] == "ran"
    assert "gate demote at 0.500" in stage["detail"]
    assert all(0.0 <= item["stages"]["relevance"] <= 1.0 for item in body["items"])


def test_a_product_added_after_loading_is_scored_from_its_text(student: BERT2DNNStudent) -> None:
    scorer = ProductScorer(student, [(("d", "1"), "grey linen sofa")])
    before = scorer.score("sofa", [("d", "1"), ("d", "9")], ["grey linen sofa", "oak desk"])
    assert len(scorer) == 2  # the new product's vector is kept
    direct = student.score(["sofa", "sofa"], ["grey linen sofa", "oak desk"])
    np.testing.assert_allclose(before, direct, rtol=1e-5)
    edited = scorer.score("sofa", [("d", "1")], ["oak desk"])  # its text changed
    np.testing.assert_allclose(edited, direct[1:], rtol=1e-5)


def test_demoted_candidates_stay_out_of_the_ranking_window() -> None:
    state = SearchState(Params("q"), Filters(), 10, QueryInfo("q", "q"))
    state.candidates = Candidates(keys=[("d", str(i)) for i in range(6)],
                                  scores=np.arange(6, 0, -1, dtype=np.float32))  # fmt: skip
    state.gated_from = 4
    outcome = PrerankStage(keep=5).run(state)
    assert state.window == 4
    assert state.reorderable() == 4
    assert "relevance gate demoted the rest" in outcome.detail


def test_when_every_candidate_is_below_none_is_demoted(workspace: Path) -> None:
    plain, _, _ = _search(workspace, _settings(gate="off"))
    order, _, detail = _search(workspace, _settings(threshold=1.0))
    assert order == plain
    assert f"all {len(plain)} below: none demoted" in detail
    dropped, _, detail = _search(workspace, _settings(gate="drop", threshold=1.0))
    assert dropped == []
    assert f"{len(plain)} dropped, 0 kept" in detail
