"""The pipeline Stage contract, checked on every registered stage, and the Engine's report.

Every stage of ``STAGES.names()`` loads from a :class:`StageContext` — in memory over a tiny
hybrid retriever (no bundle: the ``rank`` stage is :class:`Absent` and says why), and over a
bundle with a trained ranking model, a relevance model and an allocation model (every stage
loads) — and runs on a
:class:`SearchState`, keeping the candidates and every column aligned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shopsearch.catalog.candidates import Filters
from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import AllocationSettings, Settings
from shopsearch.pipeline.engine import Engine
from shopsearch.pipeline.request import SearchParams
from shopsearch.pipeline.stage import STAGES, Absent, Outcome, Stage, StageContext
from shopsearch.pipeline.stages.allocate import ALLOCATION_DIR
from shopsearch.pipeline.stages.rank import RANKING_DIR
from shopsearch.pipeline.stages.relevance import RELEVANCE_DIR
from shopsearch.pipeline.state import QueryInfo, SearchState
from shopsearch.ranking.ranker import train_ranker
from shopsearch.ranking.samples import Samples
from shopsearch.ranking.train import TrainConfig
from shopsearch.relevance.distill import RelevanceGate
from shopsearch.relevance.serving import RelevanceModel, row_text
from shopsearch.relevance.student import BERT2DNNStudent, StudentConfig
from shopsearch.rerank.allocation.logs import allocation_frames, make_model, new_since
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.store.workspace import Workspace

from ..retrieval.test_dense import HashEncoder

NAMES = STAGES.names()
STATUSES = {"ran", "identity", "skipped"}
QUERY = "red shoe lamp"


def _hybrid(products: pa.Table) -> HybridRetriever:
    sources = {"lexical": LexicalRetriever(), "dense": DenseRetriever(encoder=HashEncoder())}
    return HybridRetriever(sources, per_source_k=20).index(products)


@pytest.fixture(scope="module")
def memory_context(products: pa.Table) -> StageContext:
    """An engine built in memory: no workspace, no bundle."""
    return StageContext(Settings(), _hybrid(products), ProductLookup(products))


@pytest.fixture(scope="module")
def bundle_context(
    tiny_workspace: Path,
    tiny_split: tuple[Samples, Samples],
    tmp_path_factory: pytest.TempPathFactory,
) -> StageContext:
    """A bundle with a ranking, a relevance and an allocation model trained on the tiny log,
    over that workspace."""
    workspace = Workspace.open(tiny_workspace)
    bundle = tmp_path_factory.mktemp("bundle")
    ranker = train_ranker(tiny_split[0], "dnn", "feature", TrainConfig(epochs=1, batch_size=512))
    ranker.save(bundle / RANKING_DIR)
    products = workspace.table("products")
    _relevance(products).save(bundle / RELEVANCE_DIR)
    con = workspace.connect()
    logs, catalog = allocation_frames(con, new_since(con, 30))
    allocator = make_model(AllocationSettings(members=2)).fit(logs, catalog)
    allocator.save(bundle / ALLOCATION_DIR)
    return StageContext(Settings(), _hybrid(products), ProductLookup(products), workspace, bundle)


def _relevance(products: pa.Table) -> RelevanceModel:
    """A small student taught by a stand-in teacher (a title sharing a word with the query is
    relevant), with a gate at 0.5."""
    texts = [row_text(row) for row in products.to_pylist()[:40]]
    queries = [text.split()[0].lower() for text in texts]
    pairs = [(q, t, 0.9 if q in t.lower() else 0.1) for q in queries[:10] for t in texts]
    student = BERT2DNNStudent(StudentConfig(buckets=2**10, dim=8, hidden=16, epochs=2))
    student.fit([q for q, _, _ in pairs], [t for _, t, _ in pairs], [s for _, _, s in pairs])
    return RelevanceModel(student, RelevanceGate(0.5, len(pairs)))


def _state(context: StageContext, query: str, retrieved: bool) -> SearchState:
    """A search as the engine starts it; ``retrieved``: with retrieval's candidates and one
    column already in place (what the stages after ``retrieve`` see)."""
    state = SearchState(SearchParams(query), Filters(), 30, QueryInfo(query, query))
    if retrieved:
        hits = context.retrieval.search(query, state.depth)
        state.candidates = hits.candidates
        state.facets = hits.facets or {}
        state.add_column("retrieve.fused", hits.candidates.scores)
        state.query.vectors.update(hits.query_vectors)
    return state


def _check_aligned(state: SearchState) -> None:
    n = len(state.candidates)
    assert len(state.candidates.scores) == n
    assert len(set(state.candidates.keys)) == n
    for name, values in state.candidates.sources.items():
        assert len(values) == n, f"source scores {name!r} are not aligned"
    for name, column in state.columns.items():
        assert column.shape == (n,), f"column {name!r} has {column.shape}, candidates {n}"
    assert state.window is None or 0 <= state.window <= n


def _run(stage: Stage, state: SearchState) -> Outcome:
    before = list(state.candidates.keys)
    outcome = stage.run(state)
    assert isinstance(outcome, Outcome)
    assert outcome.status in STATUSES
    assert isinstance(outcome.detail, str)
    _check_aligned(state)
    if outcome.status == "identity":  # passed on unchanged
        assert state.candidates.keys == before
    return outcome


def _load(name: str, context: StageContext) -> Stage | Absent:
    loaded = STAGES.get(name).load(context)
    assert isinstance(loaded, Stage | Absent)
    if isinstance(loaded, Absent):
        assert loaded.reason.strip(), f"stage {name!r} is absent without a reason"
    else:
        assert loaded.name == name
    return loaded


@pytest.mark.parametrize("name", NAMES)
def test_stage_is_registered_under_its_name(name: str) -> None:
    cls = STAGES.get(name)
    assert cls.name == name
    assert STAGES.name_of(cls) == name


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("context_name", ["memory_context", "bundle_context"])
def test_stage_loads_and_runs_keeping_columns_aligned(
    name: str, context_name: str, request: pytest.FixtureRequest
) -> None:
    context: StageContext = request.getfixturevalue(context_name)
    loaded = _load(name, context)
    if isinstance(loaded, Absent):
        assert context.bundle is None, f"stage {name!r} is absent from a bundle: {loaded.reason}"
        return
    query = QUERY if context.workspace is None else _logged_query(context.workspace)
    for retrieved in (False, True):
        state = _state(context, query, retrieved)
        _run(loaded, state)
        if retrieved:
            assert len(state.candidates) > 0
        # a second run on the state it left behind (stages are stateless per search)
        _run(loaded, state)


def test_rank_without_a_bundle_is_absent_with_a_reason(memory_context: StageContext) -> None:
    loaded = STAGES.get("rank").load(memory_context)
    assert isinstance(loaded, Absent)
    assert "no ranking model" in loaded.reason


def test_every_stage_runs_in_the_default_order(bundle_context: StageContext) -> None:
    """The default stages in order on one state, as the engine runs them: every stage loads
    from a bundle with a model, and the ranking model re-orders and adds its columns."""
    names = Settings().pipeline.stages
    state = _state(bundle_context, _logged_query(bundle_context.workspace), retrieved=False)
    statuses: dict[str, str] = {}
    for name in names:
        stage = _load(name, bundle_context)
        assert isinstance(stage, Stage)
        statuses[name] = _run(stage, state).status
    assert statuses["retrieve"] == statuses["relevance"] == statuses["rank"] == "ran"
    assert {"retrieve.fused", "relevance", "rank.click", "rank.value"} <= set(state.columns)
    value = state.columns["rank.value"][: state.window]
    assert np.all(np.diff(value) <= 0)


def _logged_query(workspace: Workspace | None) -> str:
    assert workspace is not None
    row = workspace.connect().execute("SELECT query FROM requests LIMIT 1").fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture
def engine(products: pa.Table, memory_context: StageContext) -> Engine:
    return Engine(memory_context.retrieval, ProductLookup(products), Settings())


def test_engine_reports_every_default_stage_with_timings(engine: Engine) -> None:
    response = engine.search(SearchParams(QUERY, explain=True, size=5))
    default = Settings().pipeline.stages
    assert [report.name for report in response.pipeline] == default
    assert len(default) == 7
    for report in response.pipeline:
        assert report.status in STATUSES
        assert np.isfinite(report.ms)
        assert report.ms >= 0
        assert report.candidates >= 0
        if report.status == "skipped":
            assert report.ms == 0.0
            assert report.detail
        else:
            assert response.timings_ms[report.name] >= 0
    statuses = {report.name: report.status for report in response.pipeline}
    assert statuses == {
        "query": "identity",
        "retrieve": "ran",
        "relevance": "identity",
        "prerank": "identity",
        "rank": "skipped",
        "rerank": "identity",
        "allocate": "skipped",
    }
    assert {"retrieve.lexical", "retrieve.dense", "retrieve.fusion", "total"} <= set(
        response.timings_ms
    )
    assert response.items
    assert all("retrieve.fused" in item.stages for item in response.items)
