"""The worked examples of CONTRIBUTING.md run as documented: an outside retriever, stage and
evaluation suite, each one new module named by its dotted path."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest

from shopsearch.cli import run
from shopsearch.config import load_settings
from shopsearch.evaluate.suite import SUITES
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stage import STAGES
from shopsearch.retrieval.registry import RETRIEVERS
from shopsearch.store.workspace import Workspace

DOC = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"
PRODUCTS = pd.DataFrame(
    {
        "product_id": ["1", "2", "3", "4"],
        "title": ["Grey linen sofa", "Oak desk", "Leather sofa bed", "Sofa cushion"],
        "brand": ["Acme", "Bolt", "Acme", "Zed"],
        "category": ["Furniture > Sofas", "Furniture > Desks", "Furniture > Sofas", "Decor"],
        "price": [499.0, 199.0, 899.0, 20.0],
        "in_stock": [False, True, True, True],
    }
)


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Path]:
    """The documented modules written as the package ``myplugins`` on ``sys.path``."""
    for block in _blocks("python"):
        match = re.match(r"# file: (\S+)\n", block)
        assert match, "every python example names its file"
        path = tmp_path / "plugins" / match.group(1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block)
    (tmp_path / "plugins" / "myplugins" / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path / "plugins"))
    yield tmp_path
    RETRIEVERS.remove("brand")
    STAGES.remove("in-stock-first")
    SUITES.remove("brand-recall")
    sys.path.remove(str(tmp_path / "plugins"))
    for name in [m for m in sys.modules if m.startswith("myplugins")]:
        del sys.modules[name]


def test_the_documented_retriever_and_stage_plug_in(plugins: Path) -> None:
    root = plugins / "ws"
    catalog = plugins / "products.csv"
    PRODUCTS.to_csv(catalog, index=False)
    assert run(["ingest", "products", str(catalog), "-w", str(root), "--add-domains"]) == 0
    retrieval, pipeline = _blocks("toml")
    (root / "shopsearch.toml").write_text(retrieval + "\n" + pipeline)
    assert run(["index", "-w", str(root)]) == 0
    ws = Workspace.open(root)
    engine = Engine.load(ws, load_settings(root))
    assert list(engine.retrieval.sources) == ["lexical", "brand"]
    assert list(root.glob("models/*/retrieval/brand/rows.json"))

    response = engine.search(SearchParams("acme sofa", explain=True))
    names = [s.name for s in response.pipeline]
    assert names == [
        "query",
        "retrieve",
        "relevance",
        "prerank",
        "rank",
        "in-stock-first",
        "rerank",
    ]
    ids = [item.product_id for item in response.items]
    assert ids.index("3") < ids.index("1")  # in stock first: product 1 is out of stock
    assert not response.items[-1].in_stock
    by_id = {item.product_id: item for item in response.items}
    assert by_id["1"].stages["retrieve.brand"] == 1.0  # the brand source found Acme
    assert by_id["4"].stages["retrieve.brand"] is None
    assert by_id["1"].stages["in-stock-first.in_stock"] == 0.0


def test_the_documented_suite_runs_by_dotted_path(plugins: Path) -> None:
    judgments = plugins / "j.csv"
    pd.DataFrame(
        {"query": ["acme sofa", "acme sofa", "oak desk"], "brand": ["Acme", "Zed", "Bolt"],
         "relevant": [1, 0, 1]}
    ).to_csv(judgments, index=False)  # fmt: skip
    report = plugins / "r.json"
    argv = ["eval", "myplugins.brand_recall:BrandRecallSuite", "--judgments", str(judgments),
            "--report", str(report)]  # fmt: skip
    assert run(argv) == 0
    body = orjson.loads(report.read_bytes())
    assert body["primary_metric"] == "hit_rate"
    assert body["systems"]["shopsearch/brand-word"]["hit_rate"] == 0.5
    assert body["systems"]["baseline/never"]["hit_rate"] == 0.0
