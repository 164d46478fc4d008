"""``eval relevance`` with query understanding: ``shopsearch/hybrid+query`` and the misspelled
slice (test queries with a word the catalog does not have)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Self

import orjson
import pandas as pd
import pytest

from shopsearch.cli import run
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis, QueryComponent
from shopsearch.query.data import QueryData

TITLES = [
    "cordless drill kit", "ceiling fan with light", "wood screws box", "garden hose reel",
    "led light bulb", "toilet seat white", "paint roller set", "door hinge brass",
    *(f"filler product number {i}" for i in range(100)),  # the baselines retrieve 100
]  # fmt: skip


class NearestWord(QueryComponent):
    """A test speller: each query word not in the catalog becomes the catalog word sharing its
    first three letters."""

    name = "test-nearest-word"
    order = 20

    def fit(self, data: QueryData) -> Self:
        self.words_ = sorted(data.vocabulary().index)
        return self

    def apply(self, analysis: QueryAnalysis) -> None:
        known = set(self.words_)
        fixed = [
            w if w in known else next((k for k in self.words_ if k[:3] == w[:3]), w)
            for w in analysis.text.split()
        ]
        text = " ".join(fixed)
        if text != analysis.text:
            analysis.correction = analysis.text = text

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "words.json").write_bytes(orjson.dumps(self.words_))

    @classmethod
    def load(cls, path: Path) -> Self:
        component = cls()
        component.words_ = orjson.loads((path / "words.json").read_bytes())
        return component


@pytest.fixture
def registered() -> Iterator[None]:
    with QUERY_COMPONENTS.registered(NearestWord.name, NearestWord):
        yield


def _write(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    frame = pd.DataFrame(
        [(i, TITLES.index(t) + 100, t, q, g) for i, (q, t, g) in enumerate(rows)],
        columns=["id", "product_uid", "product_title", "search_term", "relevance"],
    )
    frame.to_csv(path, index=False, encoding="latin-1")
    return path


@pytest.mark.slow
def test_hybrid_plus_query_and_the_misspelled_slice(tmp_path: Path, registered: None) -> None:
    train = _write(tmp_path / "train.csv", [
        ("cordless drill", "cordless drill kit", 3.0), ("drill", "wood screws box", 1.0),
        ("fan light", "ceiling fan with light", 3.0), ("hose", "garden hose reel", 3.0),
        ("bulb", "led light bulb", 3.0), ("screws", "wood screws box", 3.0),
        *(("filler", f"filler product number {i}", 1.0) for i in range(100)),
    ])  # fmt: skip
    test = _write(tmp_path / "test.csv", [
        ("toilett seat", "toilet seat white", 3.0), ("toilett seat", "door hinge brass", 1.0),
        ("paint roller", "paint roller set", 3.0), ("paint roller", "led light bulb", 1.0),
        ("door hinge", "door hinge brass", 3.0), ("door hinge", "wood screws box", 1.0),
    ])  # fmt: skip
    report = tmp_path / "r.json"
    code = run(["eval", "relevance", "--dataset", "homedepot", "--train", str(train), "--test",
                str(test), "--report", str(report), "--cache-dir", str(tmp_path / "cache"),
                "--query-components", NearestWord.name, "--learned", "none",
                "--relevance-models", "none"])  # fmt: skip
    assert code == 0
    body = orjson.loads(report.read_bytes())
    assert body["dataset"]["misspelled_test_queries"] == 1  # "toilett"
    ours = body["systems"]["shopsearch/hybrid+query"]
    used = body["config"]["hybrid+query"]
    assert used["queries_changed"] == 1
    assert [c.rsplit(":", 1)[-1] for c in used["components"]] == ["NearestWord"]
    assert ours["misspelled"]["queries"] == 1
    assert ours["misspelled"]["ndcg@10"] == pytest.approx(1.0)
    assert "misspelled" in body["systems"]["shopsearch/lexical"]


@pytest.mark.slow
def test_generative_systems_and_the_cold_start_slice(tmp_path: Path) -> None:
    """``--generative``: the rq-fixed generator and fused+gen are scored, with the cold-start
    slice (relevant test products in no training pair) for every system."""
    pairs = [("cordless drill", "cordless drill kit"), ("fan light", "ceiling fan with light"),
             ("hose", "garden hose reel"), ("bulb", "led light bulb"),
             ("screws", "wood screws box")]  # fmt: skip
    train = _write(tmp_path / "train.csv", [
        *((f"{q} {n}", t, 3.0) for q, t in pairs for n in ("", "pro", "best", "cheap", "big")),
        *((f"filler {i}", f"filler product number {i}", 3.0) for i in range(100)),
    ])  # fmt: skip
    test = _write(tmp_path / "test.csv", [
        ("drill kit", "cordless drill kit", 3.0), ("toilet seat", "toilet seat white", 3.0),
        ("paint roller", "paint roller set", 3.0), ("paint roller", "led light bulb", 1.0),
    ])  # fmt: skip
    report = tmp_path / "r.json"
    code = run(["eval", "relevance", "--dataset", "homedepot", "--train", str(train), "--test",
                str(test), "--report", str(report), "--cache-dir", str(tmp_path / "cache"),
                "--query-components", "none", "--relevance-models", "none",
                "--generative", "all"])  # fmt: skip
    assert code == 0
    body = orjson.loads(report.read_bytes())
    assert body["dataset"]["cold_start_test_queries"] == 2  # toilet seat, paint roller
    for name in ("baseline/rq-fixed", "shopsearch/fused+gen", "shopsearch/lexical"):
        system = body["systems"][name]
        assert system["cold_start"]["queries"] == 2
        assert 0.0 <= system["recall@100"] <= 1.0
    for name in ("shopsearch/gen-sft", "shopsearch/gen-dpo", "shopsearch/gen-rad-dpo"):
        assert 0.0 <= body["systems"][name]["recall@100"] <= 1.0
    assert body["config"]["fused_gen"]["generative"] == "gen-rad-dpo"
    assert set(body["config"]["fused_gen"]["weights"]) >= {"lexical", "generative"}
    assert body["config"]["rq-fixed"]["products"] == body["dataset"]["products"]
    assert body["config"]["gen-rad-dpo"]["alignment"]["mode"] == "rad-dpo"
    for model in ("two-tower", "sci-two-tower"):  # SCI's consistent index against plain IVF
        for name in (f"baseline/{model}+ivf", f"shopsearch/{model}+ci"):
            assert 0.0 <= body["systems"][name]["ndcg@10"] <= 1.0
            assert 0.0 < body["config"]["ci"][name]["recall_of_exact_top100"] <= 1.0
    bad = run(["eval", "relevance", "--dataset", "homedepot", "--train", str(train), "--test",
               str(test), "--generative", "tiger"])  # fmt: skip
    assert bad == 2
