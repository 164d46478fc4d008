"""The query stage's plumbing: components fitted by ``train --stage query``, saved in the
bundle, run on every search, visible in ``--explain`` and read by retrieval; the eval suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Self

import orjson
import pytest

from shopsearch.cli import run
from shopsearch.config import RetrievalSettings, Settings
from shopsearch.errors import InvalidInputError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.query.base import QUERY_COMPONENTS, QueryAnalysis, QueryComponent
from shopsearch.query.data import QueryData
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index
from shopsearch.training.query import train_query_bundle

TINY = SimulationConfig(domains=2, products=120, users=60, sessions=300, seed=6)


class FirstWordIntent(QueryComponent):
    """A test component: the category most clicked after queries sharing the first word."""

    name = "test-first-word"
    order = 30
    prefix: ClassVar[str] = "first word"

    def fit(self, data: QueryData) -> Self:
        firsts = data.outcomes.assign(word=data.outcomes["query"].str.split().str[0])
        self.leaf_ = firsts.groupby("word")["category"].agg(lambda c: c.mode().iloc[0]).to_dict()
        return self

    def apply(self, analysis: QueryAnalysis) -> None:
        words = analysis.text.split()
        leaf = self.leaf_.get(words[0]) if words else None
        if leaf:
            analysis.intents = [(leaf, 0.9)]
            analysis.notes[self.name] = f"{self.prefix} -> {leaf}"

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        (path / "leaf.json").write_bytes(orjson.dumps(self.leaf_))

    @classmethod
    def load(cls, path: Path) -> Self:
        component = cls()
        component.leaf_ = orjson.loads((path / "leaf.json").read_bytes())
        return component


@pytest.fixture
def registered() -> Iterator[None]:
    with QUERY_COMPONENTS.registered(FirstWordIntent.name, FirstWordIntent):
        yield


def _lexical() -> Settings:
    return Settings(retrieval=RetrievalSettings(sources=["lexical"]))


def test_query_data_comes_from_the_log(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    simulate(ws, TINY)
    data = QueryData.from_workspace(ws)
    assert data.source == "events"
    assert len(data.queries) == ws.count("requests")
    assert set(data.outcomes["stage"]) <= {1, 2, 3}
    assert (data.outcomes["category"] != "").all()
    assert len(data.reformulations()) > 0
    counts = data.query_counts()
    assert counts["requests"].sum() == len(data.queries)
    assert data.vocabulary().index[0]  # the catalog's words


def test_trained_components_run_in_the_query_stage(tmp_path: Path, registered: None) -> None:
    ws = Workspace.create(tmp_path / "ws")
    simulate(ws, TINY)
    build_index(ws, _lexical())
    with pytest.raises(InvalidInputError, match="unknown query component 'nope'"):
        train_query_bundle(ws, _lexical(), ["nope"])
    bundle = train_query_bundle(ws, _lexical(), [FirstWordIntent.name])
    assert (bundle / "query" / "config.json").exists()
    engine = Engine.load(ws, _lexical())
    query = str(ws.connect().execute("SELECT query FROM requests LIMIT 1").fetchone()[0])
    response = engine.search(SearchParams(query, explain=True))
    stage = {s.name: s for s in response.pipeline}["query"]
    assert stage.status == "ran"
    assert "first word" in stage.detail
    assert response.intents
    assert response.intents[0][1] == 0.9
    off = _lexical()
    off.query.enabled = False
    plain = Engine.load(ws, off).search(SearchParams(query))
    assert {s.name: s for s in plain.pipeline}["query"].status == "identity"
    assert plain.intents == []


def test_eval_query_runs_every_registered_system(tmp_path: Path, registered: None) -> None:
    from shopsearch.evaluate.suites.query_sim import SYSTEMS

    ws = Workspace.create(tmp_path / "ws")
    simulate(ws, TINY)
    report = tmp_path / "r.json"
    SYSTEMS["shopsearch/test-first-word"] = (FirstWordIntent.name,)
    try:
        code = run(
            [
                "eval",
                "query",
                "--dataset",
                "sim",
                "-w",
                str(ws.root),
                "--report",
                str(report),
                "--systems",
                "baseline/none,shopsearch/test-first-word",
                "--max-test-requests",
                "60",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
    finally:
        del SYSTEMS["shopsearch/test-first-word"]
    assert code == 0
    body = orjson.loads(report.read_bytes())
    assert set(body["systems"]) == {"baseline/none", "shopsearch/test-first-word"}
    none = body["systems"]["baseline/none"]
    assert 0 < none["ndcg@10"] <= 1
    assert "correction_accuracy" not in none
    ours = body["systems"]["shopsearch/test-first-word"]
    assert 0 <= ours["intent_top1_acc"] <= 1
    assert body["dataset"]["typo_test_requests"] >= 0


@pytest.mark.slow
def test_bench_retrieval_times_the_query_stage(tmp_path: Path, registered: None) -> None:
    from shopsearch.bench.retrieval import run_retrieval_bench

    ws = Workspace.create(tmp_path / "ws")
    simulate(ws, TINY)
    build_index(ws, _lexical())
    train_query_bundle(ws, _lexical(), [FirstWordIntent.name])
    report = run_retrieval_bench(ws, Settings(), n_queries=30, say=lambda _m: None)
    timed = report["systems"]["shopsearch/engine+query@logged-mix"]
    assert 0 < timed["query_stage_p50_ms"] <= timed["query_stage_p99_ms"] < timed["p99_ms"]


def test_training_leaves_baselines_out_by_default() -> None:
    from shopsearch.training.query import query_component_names

    chosen = query_component_names([])
    assert set(chosen) == {"spell", "intent", "rewrite", "suggest"}
    assert "symspell" not in chosen  # a baseline: named explicitly to train it
    assert "normalize" not in chosen  # measured not to help: named to train it
    assert query_component_names(["symspell"]) == ["symspell"]
    assert query_component_names(["normalize", "spell"]) == ["normalize", "spell"]


def test_a_workspace_without_logs_or_judgments_is_told_what_to_ingest(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    simulate(ws, TINY)
    bare = Workspace.create(tmp_path / "bare")
    bare.append("products", ws.table("products"))
    build_index(bare, _lexical())
    with pytest.raises(InvalidInputError, match="no search log and no judgments"):
        train_query_bundle(bare, _lexical(), ["spell"])


def test_bad_queries_get_an_answer_not_a_crash(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    simulate(ws, TINY)
    build_index(ws, _lexical())
    train_query_bundle(ws, _lexical(), ["normalize", "spell", "intent-linear", "rm3"])
    engine = Engine.load(ws, _lexical())
    domain = str(ws.connect().execute("SELECT domain FROM requests LIMIT 1").fetchone()[0])
    for empty in ("", "   ", "?!"):  # the HTTP route refuses these; the engine finds nothing
        response = engine.search(SearchParams(empty, domain))
        assert response.correction is None
        assert response.intents == []
    with pytest.raises(InvalidInputError, match="the limit is 512"):
        engine.search(SearchParams("x" * 10_000, domain))
    longest = engine.search(SearchParams("lamp " * 102, domain, explain=True))
    assert {s.name: s.status for s in longest.pipeline}["query"] == "ran"
    for text in ("диван серый", "沙发", "أريكة رمادية", "🙂 lamp", "co\x00ffee"):
        response = engine.search(SearchParams(text, domain, explain=True))
        assert {s.name: s.status for s in response.pipeline}["query"] == "ran", text
        assert response.correction is None or response.correction.isascii(), text
