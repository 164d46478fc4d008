"""Fixtures of the contract tests: one tiny catalog, and the learned models trained on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from shopsearch.catalog.candidates import ProductKey
from shopsearch.retrieval.learned_train import (
    Learned,
    LearnedConfig,
    LogSamples,
    item_texts,
    train_learned,
)
from shopsearch.retrieval.mmse import StagedSamples
from shopsearch.text.encoders import ENCODERS

from ..retrieval.test_dense import WORDS, HashEncoder, catalog, make_products

#: Size of the contract catalog: small enough to index in milliseconds, large enough for PQ
#: codebooks of 2**6 codewords (learned-pq trains ``floor(log2(n))``-bit codes).
CATALOG_SIZE = 80

#: Settings of a two-tower model that trains in well under a second on the catalog.
TWO_TOWER: dict[str, Any] = {
    "buckets": 2**12,
    "head_dim": 16,
    "batch_size": 16,
    "random_negatives": 16,
    "epochs": 2,
    "lr": 0.01,
}


@pytest.fixture(scope="session")
def catalog_rows() -> list[dict[str, Any]]:
    """The catalog as rows: two domains, brands in several cases and none, category paths of
    one to three levels and none, prices (some missing), in and out of stock."""
    return catalog(CATALOG_SIZE)


@pytest.fixture(scope="session")
def products(catalog_rows: list[dict[str, Any]]) -> pa.Table:
    """The catalog as a workspace ``products`` table."""
    return make_products(catalog_rows)


@pytest.fixture(scope="session")
def learned(products: pa.Table) -> Learned:
    """Every learned retrieval model (two-tower, two-tower-pq, gcn, sci-two-tower) trained on
    judgments of the catalog: query ``<word>s`` → the products whose title has the word
    (grade 3)."""
    texts = item_texts(products)
    titles = dict(zip(texts, products.column("title").to_pylist(), strict=True))
    qrels: dict[str, dict[ProductKey, float]] = {
        f"{word}s": {key: 3.0 for key, title in titles.items() if word in title.split()}
        for word in WORDS
    }
    samples = StagedSamples.from_judgments(qrels, texts)
    config = LearnedConfig(
        models=["two-tower", "two-tower-pq", "gcn", "sci-two-tower"],
        two_tower=dict(TWO_TOWER),
        pq_m=8,
    )
    return train_learned(LogSamples(samples, "judgments", 2.0), products, config)


@pytest.fixture
def hash_encoder() -> Iterator[type[HashEncoder]]:
    """The test encoder of the dense tests, registered while the test runs (a saved dense index
    names its encoder, and loading builds it from the registry)."""
    with ENCODERS.registered(HashEncoder.name, HashEncoder):
        yield HashEncoder
