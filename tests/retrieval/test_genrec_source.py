"""The ``genrec`` source: trained page-wise on tiny logged searches, served with the user's
history from the query plan, updated without retraining, saved and loaded, and published by
``train --stage retrieval --model genrec`` so that the pipeline passes each user's history."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

from shopsearch.catalog.candidates import ProductKey
from shopsearch.config import RetrievalSettings, Settings
from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.pipeline.stages.retrieve import RetrieveStage
from shopsearch.pipeline.state import QueryInfo
from shopsearch.retrieval.base import QueryPlan
from shopsearch.retrieval.generative.genrec import GenRec, GenRecConfig
from shopsearch.retrieval.generative.genrec_retriever import GenRecRetriever
from shopsearch.retrieval.generative.genrec_train import GenRecTrainConfig, train_genrec
from shopsearch.retrieval.generative.model import GeneratorConfig
from shopsearch.retrieval.generative.pages import PageSamples
from shopsearch.retrieval.generative.retriever import GenerativeRetriever
from shopsearch.retrieval.generative.trained import GenerativeModel, generator_digest
from shopsearch.retrieval.learned_train import item_texts
from shopsearch.simulate.api import simulate
from shopsearch.simulate.config import SimulationConfig
from shopsearch.store.workspace import Workspace
from shopsearch.text.encoders import ENCODERS
from shopsearch.training.index import build_index
from shopsearch.training.retrieval import train_retrieval_bundle

from .test_dense import WORDS, HashEncoder, catalog, make_products


@pytest.fixture(autouse=True)
def _hash_encoder() -> Iterator[None]:
    with ENCODERS.registered(HashEncoder.name, HashEncoder):
        yield


def logged_pages(products: pa.Table, users: int = 6) -> PageSamples:
    """Searches for each word (``"<word>s"``), each clicking up to three products of the same
    domain whose title has the word, one second apart; a user searches the same few words."""
    titles = dict(zip(item_texts(products), products.column("title").to_pylist(), strict=True))
    requests: dict[str, list[object]] = {k: [] for k in ("request_id", "user_id", "domain",
                                                         "query", "timestamp")}  # fmt: skip
    shown: dict[str, list[object]] = {"request_id": [], "product_id": [], "position": []}
    clicks: dict[str, list[object]] = {"request_id": [], "product_id": [], "kind": []}
    at = 0
    for round_ in range(3):
        for which, word in enumerate(WORDS):
            for domain in ("us", "de"):
                hits = [k for k, t in titles.items() if k[0] == domain and word in t.split()]
                rid = f"r{at}"
                requests["request_id"].append(rid)
                requests["user_id"].append(f"u{which % users}-{domain}")
                requests["domain"].append(domain)
                requests["query"].append(f"{word}s")
                requests["timestamp"].append(at * 1_000_000)
                for position, (_, pid) in enumerate(hits[round_ : round_ + 3], start=1):
                    shown["request_id"].append(rid)
                    shown["product_id"].append(pid)
                    shown["position"].append(position)
                    clicks["request_id"].append(rid)
                    clicks["product_id"].append(pid)
                    clicks["kind"].append("click" if position > 1 else "purchase")
                at += 1
    tables = [pa.table(requests), pa.table(shown), pa.table(clicks)]
    tables[0] = tables[0].set_column(4, "timestamp", pa.array(requests["timestamp"], pa.int64()))
    return PageSamples.from_events(*tables)


def genrec_model(products: pa.Table, epochs: int = 40) -> GenerativeModel:
    """A tiny GenRec model trained on :func:`logged_pages` of ``products``."""
    texts = item_texts(products)
    sizes = GeneratorConfig(dim=16, heads=2, layers=1, memory=2, epochs=epochs, batch_size=16)
    config = GenRecTrainConfig(levels=2, codewords=4, generator=sizes,
                               genrec=GenRecConfig(history=5))  # fmt: skip
    return train_genrec(
        logged_pages(products), list(texts), list(texts.values()), HashEncoder(), config
    )


@pytest.fixture(scope="module")
def products() -> pa.Table:
    return make_products(catalog(80))


@pytest.fixture(scope="module")
def model(products: pa.Table) -> GenerativeModel:
    with ENCODERS.registered(HashEncoder.name, HashEncoder):
        return genrec_model(products)


def test_the_users_history_reaches_the_prompt(model: GenerativeModel, products: pa.Table) -> None:
    assert isinstance(model.generator, GenRec)
    assert model.info["pages_with_history"] > 0
    source = GenRecRetriever(model).index(products)
    plain = source.search("red lamps", 10).candidates
    assert plain.keys == source.retrieve("red lamps", 10).keys  # no plan: no history
    keys = [k for k in source.rows_.keys if k[0] == "us"][:4]
    plan = QueryPlan(history=tuple(keys), history_stages=(3.0, 2.0, 2.0, 2.0))
    personal = source.search("red lamps", 10, None, plan).candidates
    assert len(personal) == 10
    assert not np.allclose(plain.scores, personal.scores)  # the history changes the scores
    # a product the model was not trained on, and missing stages, are left out without error
    unknown = QueryPlan(history=(("us", "never-trained"), *keys))
    assert len(source.search("red lamps", 10, None, unknown).candidates) == 10


def test_genrec_learns_the_pages_and_reads_their_histories(
    model: GenerativeModel, products: pa.Table
) -> None:
    source = GenRecRetriever(model).index(products)
    with_history, without = [], []
    for page in logged_pages(products).pages:
        plan = QueryPlan(history=page.history, history_stages=page.history_stages)
        with_history.append(
            page.items[0] in source.search(page.query, 10, None, plan).candidates.keys
        )
        without.append(page.items[0] in source.retrieve(page.query, 10).keys)
    # chance is 10 of 80 products; measured 0.89 with the page's history, 0.48 without
    assert np.mean(with_history) > 0.7
    assert np.mean(with_history) > np.mean(without) + 0.2


def test_new_products_save_and_load(
    model: GenerativeModel, products: pa.Table, tmp_path: Path
) -> None:
    digest = generator_digest(model.generator)
    source = GenRecRetriever(model).index(products)
    source.upsert(make_products([{"domain": "us", "product_id": "n1", "title": "red lamp"}]))
    assert generator_digest(model.generator) == digest
    assert ("us", "n1") in source.retrieve("red lamp", k=1000).keys
    keys: tuple[ProductKey, ...] = tuple(source.rows_.keys[:3])
    plan = QueryPlan(history=keys, history_stages=(2.0, 2.0, 3.0))
    source.save(tmp_path / "genrec")
    loaded = GenRecRetriever.load(tmp_path / "genrec")
    assert generator_digest(loaded.model.generator) == digest
    before = source.search("blue desks", 10, None, plan).candidates
    after = loaded.search("blue desks", 10, None, plan).candidates
    assert before.keys == after.keys
    np.testing.assert_allclose(before.scores, after.scores, rtol=1e-5)


def test_clear_errors(model: GenerativeModel, products: pa.Table) -> None:
    with pytest.raises(InvalidInputError, match="--model genrec"):
        GenRecRetriever(None)
    with pytest.raises(WorkspaceError, match="'genrec' source serves"):
        GenerativeRetriever(model).index(products).retrieve("red lamps")
    texts = item_texts(products)
    empty = PageSamples.from_events(
        *[t.slice(0, 0) for t in (_one_request(), _one_shown(), _one_click())]
    )
    with pytest.raises(InvalidInputError, match="no logged page"):
        train_genrec(empty, list(texts), list(texts.values()), HashEncoder())
    with pytest.raises(InvalidInputError, match="one text each"):
        train_genrec(empty, list(texts), [], HashEncoder())


def _one_request() -> pa.Table:
    return pa.table({"request_id": ["r"], "user_id": ["u"], "domain": ["us"], "query": ["q"],
                     "timestamp": pa.array([1], pa.int64())})  # fmt: skip


def _one_shown() -> pa.Table:
    return pa.table({"request_id": ["r"], "product_id": ["p0"], "position": [1]})


def _one_click() -> pa.Table:
    return pa.table({"request_id": ["r"], "product_id": ["p0"], "kind": ["click"]})


@pytest.mark.slow
def test_train_stage_retrieval_serves_genrec_with_each_users_history(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    ws = Workspace.create(root)
    simulate(ws, SimulationConfig(domains=2, products=150, users=40, sessions=300, seed=5))
    genrec = {"epochs": 2, "dim": 16, "levels": 2, "codewords": 8, "history": 5}
    settings = Settings(
        retrieval=RetrievalSettings.model_validate(
            {"sources": ["lexical"], "learned": ["genrec"], "genrec": genrec}
        )
    )
    build_index(ws, settings)
    bundle = train_retrieval_bundle(ws, settings)
    trained = orjson.loads((bundle / "retrieval" / "learned.json").read_bytes())["per_model"]
    assert trained["genrec"]["pages_with_history"] > 0
    engine = Engine.load(ws, settings)
    source = engine.retrieval.sources["genrec"]
    assert isinstance(source, GenRecRetriever)
    stage = next(s for _, s in engine.stages if isinstance(s, RetrieveStage))
    assert stage.histories is not None
    user, query, domain = (
        ws.connect()
        .execute(
            "SELECT r.user_id, r.query, r.domain FROM requests r JOIN interactions i "
            "USING (request_id) GROUP BY ALL ORDER BY count(*) DESC LIMIT 1"
        )
        .fetchone()
    )
    plan = stage.plan(QueryInfo(query, query), user)
    assert plan is not None
    assert plan.history  # the user's logged products, most recent first
    assert plan.history == stage.histories.before(user, 2**62, 20)[0]
    assert stage.plan(QueryInfo(query, query), "nobody-logged") is None
    response = engine.search(
        SearchParams(query=query, domain=domain, user_id=user, size=20, explain=True)
    )
    assert response.items
    assert any(item.stages.get("retrieve.genrec") is not None for item in response.items)
    shutil.rmtree(root)
