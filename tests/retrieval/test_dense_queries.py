"""DenseRetriever's serving-time query path: normalised cache keys, cache off, metrics."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import Settings
from shopsearch.errors import InvalidInputError
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.progress import Progress
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.serve.metrics import Metrics
from shopsearch.store.schema import TABLES
from shopsearch.text.encoders import Encoder, FloatMatrix


class CaselessEncoder(Encoder):
    """Hashed words, case-blind; counts the queries it encodes."""

    name = "test-caseless"

    def __init__(self) -> None:
        self.queries: list[str] = []

    @property
    def dim(self) -> int:
        return 16

    def query_key(self, text: str) -> str:
        return " ".join(text.lower().split())

    def _encode(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.full((len(texts), 16), 0.01, np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, hashlib.md5(word.encode()).digest()[0] % 16] += 1.0
        unit: FloatMatrix = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        self.queries.extend(texts)
        return self._encode(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        return self._encode(texts)


def products() -> pa.Table:
    titles = ["red shoe", "blue sofa", "green lamp", "oak desk", "steel phone case"]
    rows: list[dict[str, Any]] = [
        {
            "domain": "us",
            "product_id": str(i),
            "title": t,
            "description": "",
            "brand": "b",
            "category": ["Home"],
            "price": 10.0 + i,
            "attributes": "{}",
            "created_at": datetime(2024, 1, 1, tzinfo=UTC),
            "in_stock": True,
        }
        for i, t in enumerate(titles)
    ]
    schema = TABLES["products"]
    return pa.table({f.name: [r[f.name] for r in rows] for f in schema}, schema=schema)


def test_queries_differing_in_case_and_spacing_share_one_vector() -> None:
    encoder = CaselessEncoder()
    dense = DenseRetriever(encoder=encoder).index(products())
    first = dense.retrieve("Red  Shoe", k=3)
    again = dense.retrieve(" red shoe", k=3)
    assert first.keys == again.keys
    assert encoder.queries == ["Red  Shoe"]
    stats = dense.query_cache_stats()
    assert (stats.hits, stats.misses) == (1, 1)


def test_cache_off_encodes_every_query_and_still_counts() -> None:
    encoder = CaselessEncoder()
    dense = DenseRetriever(encoder=encoder).index(products())
    dense.retrieve("lamp", k=2)
    dense.configure_queries(cache_size=0)
    for _ in range(3):
        dense.retrieve("lamp", k=2)
    assert encoder.queries == ["lamp"] * 4
    stats = dense.query_cache_stats()
    assert (stats.hits, stats.misses, stats.size, stats.capacity) == (0, 4, 0, 0)
    with pytest.raises(InvalidInputError, match="cache_size"):
        dense.configure_queries(cache_size=-1)
    with pytest.raises(InvalidInputError, match="query_batch"):
        dense.configure_queries(batch=0)


def test_metrics_count_the_engines_query_cache_and_batches() -> None:
    encoder = CaselessEncoder()
    dense = DenseRetriever(encoder=encoder, query_cache_size=1).index(products())
    # the answer cache off: the repeated "sofa" must reach the query-vector cache
    settings = Settings(search={"response_cache_size": 0})
    engine = Engine(HybridRetriever({"dense": dense}), ProductLookup(products()), settings)
    metrics = Metrics()
    metrics.watch_engine(engine)
    for query in ("sofa", "Sofa", "desk", "sofa"):
        engine.search(SearchParams(query, size=2))
    text = metrics.exposition().decode()
    assert 'shopsearch_query_cache_lookups_total{result="hit",source="dense"} 1.0' in text
    assert 'shopsearch_query_cache_lookups_total{result="miss",source="dense"} 3.0' in text
    assert 'shopsearch_query_cache_evictions_total{source="dense"} 2.0' in text
    assert 'shopsearch_query_encode_batch_size_count{source="dense"} 3.0' in text


def test_uncounted_lookups_reuse_the_vector_without_touching_the_hit_rate() -> None:
    encoder = CaselessEncoder()
    dense = DenseRetriever(encoder=encoder).index(products())
    dense.retrieve("oak desk", k=2)
    vector = dense.query_vectors(["Oak Desk"], count=False)
    np.testing.assert_allclose(vector, dense.query_vectors(["oak desk"]))
    assert encoder.queries == ["oak desk"]
    stats = dense.query_cache_stats()
    assert (stats.hits, stats.misses) == (1, 1)  # the uncounted lookup left no trace
