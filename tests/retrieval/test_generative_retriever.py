"""The generative retrieval source: trained on tiny judgments, served, updated without
retraining, saved and loaded, and published by ``train --stage retrieval --model generative``."""

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
from shopsearch.retrieval.generative.model import GeneratorConfig
from shopsearch.retrieval.generative.retriever import GenerativeRetriever
from shopsearch.retrieval.generative.train import GenerativeConfig, train_generative
from shopsearch.retrieval.generative.trained import GenerativeModel, generator_digest
from shopsearch.retrieval.learned_train import item_texts
from shopsearch.retrieval.mmse_samples import StagedSamples
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


@pytest.fixture(scope="module")
def products() -> pa.Table:
    return make_products(catalog(120))


def _qrels(products: pa.Table) -> dict[str, dict[ProductKey, float]]:
    texts = item_texts(products)
    titles = dict(zip(texts, products.column("title").to_pylist(), strict=True))
    return {
        f"{word}s": {key: 3.0 for key, title in titles.items() if word in title.split()}
        for word in WORDS
    }


@pytest.fixture(scope="module")
def model(products: pa.Table) -> GenerativeModel:
    texts = item_texts(products)
    sizes = GeneratorConfig(dim=32, heads=2, layers=1, memory=2, epochs=30, batch_size=32)
    config = GenerativeConfig(levels=2, depth=3, codewords=6, generator=sizes)
    samples = StagedSamples.from_judgments(_qrels(products), texts)
    return train_generative(samples, list(texts), HashEncoder(), config)


def test_the_trained_generator_retrieves_the_products_of_a_query(
    model: GenerativeModel, products: pa.Table
) -> None:
    retriever = GenerativeRetriever(model).index(products)
    precision = []
    for query, relevant in _qrels(products).items():
        found = retriever.retrieve(query, k=5)
        precision.append(np.mean([key in relevant for key in found.keys]))
    # chance is the share of products with one word of the 12-word vocabulary (about 1/4)
    assert np.mean(precision) > 0.6


def test_new_products_get_ids_without_retraining(
    model: GenerativeModel, products: pa.Table, tmp_path: Path
) -> None:
    digest = generator_digest(model.generator)
    retriever = GenerativeRetriever(model).index(products)
    trained = retriever.tokens_.copy()
    new = make_products([{"domain": "us", "product_id": "n1", "title": "red lamp shade"}])
    retriever.upsert(new)
    assert generator_digest(model.generator) == digest
    np.testing.assert_array_equal(retriever.tokens_[: len(trained)], trained)  # IDs stay
    row = retriever.rows_.row_of[("us", "n1")]
    vector = model.encoder.encode_items(["red lamp shade"])
    codes = model.quantizer.encode(vector)[0]
    np.testing.assert_array_equal(retriever.tokens_[row, :2], codes[:2])
    assert ("us", "n1") in retriever.retrieve("red lamp shade", k=1000).keys
    retriever.save(tmp_path / "gen")
    loaded = GenerativeRetriever.load(tmp_path / "gen")
    assert generator_digest(loaded.model.generator) == digest
    for query in ("red lamps", "wood desks"):
        assert loaded.retrieve(query, 10).keys == retriever.retrieve(query, 10).keys


def test_clear_errors(model: GenerativeModel, products: pa.Table, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="needs a trained model"):
        GenerativeRetriever(None)
    with pytest.raises(InvalidInputError, match="beam=0"):
        GenerativeRetriever(model, beam=0)
    with pytest.raises(WorkspaceError, match="no generative index"):
        GenerativeRetriever.load(tmp_path / "nothing")
    texts = item_texts(products)
    unclicked = StagedSamples.from_judgments({"lamps": {next(iter(texts)): 1.0}}, texts)
    with pytest.raises(InvalidInputError, match="no \\(query, product\\) pair reaches"):
        train_generative(unclicked, list(texts), HashEncoder())
    with pytest.raises(InvalidInputError, match="keys for"):
        train_generative(unclicked, list(texts)[:3], HashEncoder())


@pytest.mark.slow
def test_train_stage_retrieval_publishes_a_served_generative_source(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    ws = Workspace.create(root)
    simulate(ws, SimulationConfig(domains=2, products=150, users=80, sessions=300, seed=5))
    generative = {"epochs": 2, "dim": 16, "levels": 2, "codewords": 8}
    settings = Settings(
        retrieval=RetrievalSettings.model_validate(
            {"sources": ["lexical"], "learned": ["generative"], "generative": generative}
        )
    )
    build_index(ws, settings)
    bundle = train_retrieval_bundle(ws, settings)
    assert (bundle / "retrieval" / "generative" / "model" / "generator.safetensors").exists()
    trained = orjson.loads((bundle / "retrieval" / "learned.json").read_bytes())["per_model"]
    assert trained["generative"]["ids"] == "rq-fixed"  # the defaults: rq-fixed IDs, RAD-DPO
    assert trained["generative"]["alignment"]["mode"] == "rad-dpo"
    engine = Engine.load(ws, settings)
    source = engine.retrieval.sources["generative"]
    assert isinstance(source, GenerativeRetriever)
    query = ws.connect().execute("SELECT query, domain FROM requests LIMIT 1").fetchone()
    assert query is not None
    response = engine.search(SearchParams(query=query[0], domain=query[1], size=20, explain=True))
    assert response.items
    assert all(item.domain == query[1] for item in response.items)
    assert any(item.stages.get("retrieve.generative") is not None for item in response.items)
    shutil.rmtree(root)


def test_sa2crq_ids_serve_share_buckets_and_take_new_products(
    products: pa.Table, tmp_path: Path
) -> None:
    texts = item_texts(products)
    sizes = GeneratorConfig(dim=16, heads=2, layers=1, memory=2, epochs=3, batch_size=32)
    adaptive = {"target_length": 2.0, "head_split": 1, "min_length": 1, "max_length": 3}
    config = GenerativeConfig(depth=3, codewords=6, generator=sizes, ids="sa2crq",
                              sa2crq=adaptive)  # fmt: skip
    samples = StagedSamples.from_judgments(_qrels(products), texts)
    model = train_generative(samples, list(texts), HashEncoder(), config)
    assert model.info["ids"] == "sa2crq"
    retriever = GenerativeRetriever(model).index(products)
    assert len(np.unique(retriever.lengths_)) > 1  # adaptive lengths
    found = retriever.retrieve("red lamps", k=len(retriever.rows_))
    assert len(found) == len(retriever.rows_)  # exhaustive, shared leaves expanded
    assert np.all(np.diff(found.scores) <= 0)
    retriever.upsert(make_products([{"domain": "us", "product_id": "n1", "title": "red lamp"}]))
    assert ("us", "n1") in retriever.retrieve("red lamp", k=1000).keys
    retriever.save(tmp_path / "gen")
    loaded = GenerativeRetriever.load(tmp_path / "gen")
    assert loaded.retrieve("red lamps", 10).keys == retriever.retrieve("red lamps", 10).keys
