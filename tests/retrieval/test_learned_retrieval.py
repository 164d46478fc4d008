"""Learned retrieval end to end: train --stage retrieval → bundle → Engine → search; the eval."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from shopsearch.catalog.candidates import Filters
from shopsearch.cli import run
from shopsearch.config import RetrievalSettings, Settings
from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.retrieval.learned import LearnedDenseRetriever, LearnedPQRetriever
from shopsearch.retrieval.learned_train import (
    LearnedConfig,
    catalog_of,
    check_models,
    item_texts,
    train_learned,
    workspace_samples,
)
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index
from shopsearch.training.retrieval import train_retrieval_bundle

TINY = SimulationConfig(domains=2, products=150, users=80, sessions=300, seed=5)
MODELS = ["two-tower", "two-tower-pq", "gcn"]


def settings(**retrieval: object) -> Settings:
    base = {
        "sources": ["lexical"],
        "learned": MODELS,
        "learned_epochs": 1,
        "learned_buckets": 4096,
        "pq_m": 16,
        **retrieval,
    }
    return Settings(retrieval=RetrievalSettings.model_validate(base))


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("learned-ws")
    ws = Workspace.create(root)
    simulate(ws, TINY)
    build_index(ws, settings())
    return root


@pytest.fixture(scope="module")
def trained_root(sim_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("learned-trained") / "ws"
    shutil.copytree(sim_root, root)
    train_retrieval_bundle(Workspace.open(root), settings())
    return root


def _logged_query(ws: Workspace) -> tuple[str, str]:
    row = (
        ws.connect()
        .execute(
            "SELECT r.query, r.domain FROM requests r JOIN interactions i USING (request_id) "
            "ORDER BY r.timestamp LIMIT 1"
        )
        .fetchone()
    )
    assert row is not None
    return str(row[0]), str(row[1])


def test_train_publishes_a_bundle_the_engine_serves_from_learned_sources(
    sim_root: Path, trained_root: Path
) -> None:
    ws = Workspace.open(trained_root)
    old = current_bundle(Workspace.open(sim_root))
    new = current_bundle(ws)
    assert new.name != old.name
    assert (trained_root / "models" / old.name / "bundle.json").exists()  # nothing lost
    meta = orjson.loads((new / "bundle.json").read_bytes())
    assert meta["learned_retrieval"]["models"] == MODELS
    assert meta["learned_retrieval"]["trained_on"] == "events"

    engine = Engine.load(ws, settings())
    assert set(engine.retrieval.sources) == {"lexical", "two_tower", "two_tower_pq", "gcn"}
    assert isinstance(engine.retrieval.sources["two_tower"], LearnedDenseRetriever)
    assert isinstance(engine.retrieval.sources["two_tower_pq"], LearnedPQRetriever)
    query, domain = _logged_query(ws)
    response = engine.search(SearchParams(query=query, domain=domain, size=20, explain=True))
    assert response.items
    assert all(item.domain == domain for item in response.items)
    for source in ("two_tower", "two_tower_pq", "gcn"):
        assert any(item.stages.get(f"retrieve.{source}") is not None for item in response.items)
        assert f"retrieve.{source}" in response.timings_ms


def test_learned_sources_respect_filters_and_match_an_unfiltered_search(
    trained_root: Path,
) -> None:
    engine = Engine.load(Workspace.open(trained_root), settings())
    query, domain = _logged_query(Workspace.open(trained_root))
    for name in ("two_tower", "two_tower_pq", "gcn"):
        source = engine.retrieval.sources[name]
        assert isinstance(source, LearnedDenseRetriever)
        everything = source.retrieve(query, len(source.rows_))
        wanted = [k for k in everything.keys if k[0] == domain][:15]
        found = source.retrieve(query, 15, Filters(domain=domain))
        assert found.keys == wanted, name
        assert found.total == sum(k[0] == domain for k in everything.keys)


def test_catalog_updates_reach_the_learned_sources_and_survive_a_reload(
    trained_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(trained_root, root)
    ws = Workspace.open(root)
    engine = Engine.load(ws, settings())
    product = ws.table("products").slice(0, 1).to_pylist()[0]
    product.update(product_id="brand-new", title="Zyzzyva Turbo Kettle")
    product["created_at"] = datetime(2024, 1, 1, tzinfo=UTC)
    engine.upsert_products(pa.Table.from_pylist([product], schema=ws.table("products").schema))
    for name in ("two_tower", "two_tower_pq", "gcn"):
        found = engine.retrieval.sources[name].retrieve("zyzzyva turbo kettle", 50)
        assert (product["domain"], "brand-new") in found.keys, name
    reloaded = Engine.load(ws, settings())
    found = reloaded.retrieval.sources["two_tower"].retrieve("zyzzyva turbo kettle", 50)
    assert (product["domain"], "brand-new") in found.keys


def test_a_broken_bundle_is_refused(trained_root: Path, tmp_path: Path) -> None:
    from shopsearch.serve.engines import LiveEngine
    from shopsearch.serve.errors import ApiError

    root = tmp_path / "ws"
    shutil.copytree(trained_root, root)
    ws = Workspace.open(root)
    good = current_bundle(ws)
    bundle = root / "models" / "bundle-broken"
    shutil.copytree(good, bundle)
    live = LiveEngine(ws, settings(), None)
    assert live.reload(bundle.name).bundle == bundle.name  # the intact copy serves
    live.reload(good.name)
    weights = bundle / "retrieval" / "two_tower" / "encoder" / "weights.safetensors"
    weights.write_bytes(b"not safetensors")
    with pytest.raises(WorkspaceError, match="does not load"):
        Engine.load(ws, settings(), bundle)
    with pytest.raises(ApiError, match="does not load"):
        live.reload(bundle.name)
    assert live.current.bundle == good.name  # still serving the good bundle
    assert current_bundle(ws) == good
    shutil.rmtree(bundle / "retrieval" / "gcn" / "encoder")
    with pytest.raises(WorkspaceError):
        Engine.load(ws, settings(), bundle)


def test_replace_dense_puts_the_two_tower_model_in_place_of_dense(
    sim_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(sim_root, root)
    ws = Workspace.open(root)
    chosen = settings(learned=["two-tower"], learned_use="replace-dense", fusion="weighted")
    train_retrieval_bundle(ws, chosen)
    engine = Engine.load(ws, chosen)
    assert set(engine.retrieval.sources) == {"lexical", "dense"}
    assert isinstance(engine.retrieval.sources["dense"], LearnedDenseRetriever)
    assert engine.retrieval.fusion == "weighted"
    assert sum(engine.retrieval.weighting_.weights_.values()) == pytest.approx(1.0)
    query, _ = _logged_query(ws)
    assert engine.search(SearchParams(query=query)).items


def test_clear_errors(sim_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown learned retrieval model"):
        check_models(["two-tower", "bert"])
    empty = Workspace.create(tmp_path / "empty")
    with pytest.raises(InvalidInputError, match="no products"):
        train_retrieval_bundle(empty, settings())
    # products but no events and no judgments
    quiet = Workspace.create(tmp_path / "quiet")
    source = Workspace.open(sim_root)
    quiet.append("domains", source.table("domains"))
    quiet.append("products", source.table("products"))
    build_index(quiet, settings())
    before = current_bundle(quiet)
    with pytest.raises(InvalidInputError, match="no search events and no judgments"):
        train_retrieval_bundle(quiet, settings())
    assert current_bundle(quiet) == before


def test_trains_from_judgments_when_there_are_no_events(sim_root: Path, tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "judged")
    source = Workspace.open(sim_root)
    products = source.table("products")
    ws.append("domains", source.table("domains"))
    ws.append("products", products)
    rows = products.slice(0, 60).to_pylist()
    judged = [
        {
            "domain": r["domain"],
            "query": r["title"].split()[-1].lower(),
            "product_id": r["product_id"],
            "grade": 3.0 if i % 3 else 1.0,
        }
        for i, r in enumerate(rows)
    ]
    ws.upsert("judgments", pa.Table.from_pylist(judged))
    log = workspace_samples(ws, item_texts(catalog_of(ws)))
    assert log.source == "judgments"
    assert log.positive_stage == 2.0
    learned = train_learned(
        log, products, LearnedConfig(models=["two-tower"], two_tower={"buckets": 1024})
    )
    found = learned.retrievers["two-tower"].retrieve(judged[1]["query"], 10)
    assert len(found) == 10


@pytest.mark.slow
def test_cli_train_and_eval_retrieval(
    sim_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(sim_root, root)

    (root / "shopsearch.toml").write_text(
        '[retrieval]\nsources = ["lexical"]\nlearned_buckets = 4096\npq_m = 16\n'
    )
    assert run(["train", "-w", str(root), "--stage", "retrieval", "--model", "bert"]) == 2
    assert "unknown learned retrieval model" in capsys.readouterr().err
    assert (
        run(
            [
                "train",
                "-w",
                str(root),
                "--stage",
                "retrieval",
                "--model",
                "two-tower",
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    assert "published bundle" in capsys.readouterr().err
    report = tmp_path / "r.json"
    systems = (
        "baseline/bm25s,shopsearch/lexical,shopsearch/two-tower,shopsearch/two-tower-pq,"
        "baseline/faiss-pq,shopsearch/gcn"
    )
    code = run(
        [
            "eval",
            "retrieval",
            "--dataset",
            "sim",
            "-w",
            str(root),
            "--report",
            str(report),
            "--epochs",
            "1",
            "--systems",
            systems,
            "--max-test-requests",
            "80",
        ]
    )
    assert code == 0, capsys.readouterr().err
    data = orjson.loads(report.read_bytes())
    domains = set(Workspace.open(root).table("domains").column("domain_id").to_pylist())
    assert data["suite"] == "retrieval"
    assert data["dataset"]["split"] == "by time"
    assert set(data["systems"]) == set(systems.split(","))
    for name, entry in data["systems"].items():
        for metric in ("ndcg@10", "recall@100", "recall@500"):
            assert 0 <= entry[metric] <= 1, (name, metric)
        assert entry["by_domain"]
        assert set(entry["by_domain"]) <= domains
        assert entry["latency"]["ms_per_query"] > 0
    assert data["systems"]["shopsearch/two-tower-pq"]["index"]["code_bytes_per_product"] == 48
    assert data["systems"]["baseline/faiss-pq"]["index"]["code_bytes_per_product"] == 48
    assert data["dataset"]["long_tail_test_requests"] >= 0
    assert (
        run(["eval", "retrieval", "--dataset", "nope", "-w", str(root), "--report", str(report)])
        == 2
    )


@pytest.mark.slow
def test_eval_retrieval_compares_the_two_fusions_index_builds(
    sim_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``shopsearch/hybrid-rrf`` and ``shopsearch/hybrid`` are the lexical + MiniLM bundles of
    ``[retrieval] fusion = "rrf"`` and of the default ``"weighted"`` (fitted on held-out clicks)."""
    report = tmp_path / "r.json"
    code = run(["eval", "retrieval", "--dataset", "sim", "-w", str(sim_root), "--report",
                str(report), "--systems", "shopsearch/hybrid-rrf,shopsearch/hybrid",
                "--max-test-requests", "40", "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    data = orjson.loads(report.read_bytes())
    assert set(data["systems"]) == {"shopsearch/hybrid-rrf", "shopsearch/hybrid"}
    assert data["config"]["hybrid_fusion"] == "weighted"
    weights = data["config"]["hybrid_weights"]
    assert set(weights) == {"lexical", "dense"}
    assert sum(weights.values()) == pytest.approx(1.0)
    for entry in data["systems"].values():
        assert 0 < entry["ndcg@10"] <= 1
