"""``shopsearch search --explain`` shows every stage of the pipeline with its timing."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest

from shopsearch.cli import run
from shopsearch.config import PipelineSettings
from shopsearch.errors import InvalidInputError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stage import STAGES

PRODUCTS = pd.DataFrame(
    {
        "product_id": ["1", "2", "3"],
        "title": ["Grey linen sofa", "Oak desk", "Leather sofa bed"],
        "brand": ["Acme", "Bolt", "Acme"],
        "category": ["Furniture > Sofas", "Furniture > Desks", "Furniture > Sofas"],
        "price": [499.0, 199.0, 899.0],
    }
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    products = tmp_path / "products.csv"
    PRODUCTS.to_csv(products, index=False)
    assert run(["ingest", "products", str(products), "-w", str(root), "--add-domains"]) == 0
    (root / "shopsearch.toml").write_text('[retrieval]\nsources = ["lexical"]\n')
    assert run(["index", "-w", str(root)]) == 0
    return root


def test_explain_prints_every_stage_with_timings(
    workspace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert run(["search", "sofa", "-w", str(workspace), "--explain"]) == 0
    captured = capsys.readouterr()
    out = " ".join((captured.out + captured.err).split())  # rich wraps long lines
    for stage, status in [("query", "identity"), ("retrieve", "ran"), ("relevance", "identity"),
                          ("prerank", "identity"), ("rank", "skipped"),
                          ("rerank", "identity"), ("allocate", "skipped")]:  # fmt: skip
        assert f"{stage} {status}" in out
    assert "no ranking model in this bundle" in out
    assert "no relevance model in this bundle" in out
    assert "no allocation model in this bundle" in out
    assert "retrieve.lexical" in out

    assert run(["search", "sofa", "-w", str(workspace), "--json"]) == 0
    body = orjson.loads(capsys.readouterr().out)
    assert [s["name"] for s in body["pipeline"]] == ["query", "retrieve", "relevance",
                                                     "prerank", "rank", "rerank",
                                                     "allocate"]  # fmt: skip
    assert all(s["ms"] >= 0 for s in body["pipeline"])


def test_a_configured_pipeline_runs_its_own_stages(workspace: Path) -> None:
    from shopsearch.config import load_settings
    from shopsearch.store.workspace import Workspace

    settings = load_settings(workspace)
    settings.pipeline = PipelineSettings(stages=["retrieve", "rank"])
    engine = Engine.load(Workspace.open(workspace), settings)
    response = engine.search(SearchParams("sofa"))
    assert [s.name for s in response.pipeline] == ["retrieve", "rank"]
    assert [i.product_id for i in response.items][:1] == ["1"]
    with pytest.raises(ValueError, match="must include 'retrieve'"):
        PipelineSettings(stages=["query"])
    settings.pipeline = PipelineSettings(stages=["retrieve", "nope"])
    with pytest.raises(InvalidInputError, match="unknown stage 'nope'"):
        Engine.load(Workspace.open(workspace), settings)
    assert STAGES.names() == [
        "query", "retrieve", "relevance", "prerank", "rank", "rerank", "allocate"
    ]  # fmt: skip


def test_index_builds_the_registered_sources_and_refuses_trained_ones(tmp_path: Path) -> None:
    from shopsearch.config import RetrievalSettings, Settings
    from shopsearch.datasets.base import LoadedData
    from shopsearch.ingest.workspace import ingest
    from shopsearch.store.workspace import Workspace
    from shopsearch.training.index import build_index

    ws = Workspace.create(tmp_path / "ws")
    ingest(ws, LoadedData("generic", products=PRODUCTS.assign(domain="us")), add_domains=True)
    models = list((ws.root / "models").glob("bundle-*")) if (ws.root / "models").exists() else []
    for name, error in [("nope", "unknown retriever 'nope'"),
                        ("learned-dense", "is not built by 'shopsearch index'")]:  # fmt: skip
        settings = Settings(retrieval=RetrievalSettings(sources=["lexical", name]))
        with pytest.raises(InvalidInputError, match=error):
            build_index(ws, settings)
    after = list((ws.root / "models").glob("bundle-*"))
    assert after == models  # a failed build leaves no bundle behind
    engine = build_index(ws, Settings(retrieval=RetrievalSettings(sources=["lexical"])))
    assert list(engine.retrieval.sources) == ["lexical"]
