"""DenseRetriever: ANN vs exact, filters vs a brute-force reference, updates, save/load, cache."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import orjson
import pyarrow as pa
import pytest

from shopsearch.catalog.candidates import Filters, ProductKey
from shopsearch.errors import InvalidInputError, NotFittedError, WorkspaceError
from shopsearch.progress import Progress
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.store.schema import TABLES
from shopsearch.text.encoders import ENCODERS, Encoder, FloatMatrix
from shopsearch.text.product_text import product_texts


class HashEncoder(Encoder):
    """Hashed bag of words → unit vector; counts what it is asked to encode."""

    name = "test-hash"
    config_keys: ClassVar[list[str]] = ["size"]

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self.item_calls: list[list[str]] = []
        self.query_calls: list[list[str]] = []

    @property
    def dim(self) -> int:
        return self.size

    def _encode(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.zeros((len(texts), self.size), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(",", " ").split():
                h = int.from_bytes(hashlib.md5(word.encode()).digest()[:4], "little")
                out[row, h % self.size] += 1.0 if h & (1 << 31) else -1.0
            out[row, 0] += 0.01
        unit: FloatMatrix = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        self.query_calls.append(list(texts))
        return self._encode(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        self.item_calls.append(list(texts))
        if progress is not None:
            progress(len(texts), len(texts))
        return self._encode(texts)


class TableEncoder(Encoder):
    """Texts ``"v<i>"`` map to row ``i`` of a fixed matrix: tests the index on given vectors."""

    name = "test-table"

    def __init__(self, vectors: FloatMatrix) -> None:
        self.vectors = vectors

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def _encode(self, texts: Sequence[str]) -> FloatMatrix:
        return self.vectors[[int(t[1:]) for t in texts]]

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        return self._encode(texts)


def make_products(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """A products table; unspecified columns get plain defaults."""
    defaults: dict[str, Any] = {
        "domain": "us",
        "description": "",
        "brand": "",
        "category": [],
        "price": 10.0,
        "attributes": "{}",
        "created_at": datetime(2024, 1, 1, tzinfo=UTC),
        "in_stock": True,
    }
    full = [{**defaults, **row} for row in rows]
    schema = TABLES["products"]
    return pa.table({f.name: [r[f.name] for r in full] for f in schema}, schema=schema)


WORDS = [
    "red",
    "blue",
    "green",
    "shoe",
    "sofa",
    "lamp",
    "desk",
    "phone",
    "case",
    "steel",
    "wood",
    "cotton",
    "running",
    "table",
]
BRANDS = ["Acme", "ACME", "Globex", "Initech", ""]
CATEGORIES = [["Home"], ["Home", "Sofas"], ["Home", "Lamps"], ["Sport", "Shoes", "Running"], []]


def catalog(n: int = 300, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        rows.append(
            {
                "domain": ["us", "de"][i % 2],
                "product_id": f"p{i}",
                "title": " ".join(rng.choice(WORDS, 3)) + f" item{i}",
                "brand": BRANDS[i % len(BRANDS)],
                "category": CATEGORIES[i % len(CATEGORIES)],
                "price": None if i % 7 == 0 else float(rng.integers(1, 100)),
                "in_stock": bool(i % 3),
            }
        )
    return rows


def passes(row: dict[str, Any], f: Filters) -> bool:
    """Reference semantics of Filters."""
    price = row["price"]
    return (
        (f.domain is None or row["domain"] == f.domain)
        and (f.brand is None or (row["brand"] != "" and row["brand"].lower() == f.brand.lower()))
        and (f.category is None or tuple(row["category"][: len(f.category)]) == f.category)
        and (f.price_min is None or (price is not None and price >= f.price_min))
        and (f.price_max is None or (price is not None and price <= f.price_max))
        and (f.in_stock is None or row["in_stock"] == f.in_stock)
    )


def brute_force(
    rows: list[dict[str, Any]], encoder: HashEncoder, query: str, k: int, f: Filters
) -> tuple[list[ProductKey], dict[ProductKey, float]]:
    """The reference top ``k`` passing ``f``, and every product's true score."""
    vectors = encoder._encode(product_texts(make_products(rows)))
    scores = vectors @ encoder._encode([query])[0]
    keys = [(row["domain"], row["product_id"]) for row in rows]
    allowed = [i for i, row in enumerate(rows) if passes(row, f)]
    best = sorted(allowed, key=lambda i: -scores[i])[:k]
    return [keys[i] for i in best], dict(zip(keys, scores.tolist(), strict=True))


FILTERS = [
    Filters(),
    Filters(domain="de"),
    Filters(domain="fr"),
    Filters(brand="acme"),
    Filters(brand="gLoBeX"),
    Filters(brand=""),
    Filters(category=("Home",)),
    Filters(category=("Home", "Sofas")),
    Filters(category=("Sport", "Shoes", "Running")),
    Filters(category=("Sport", "Shoes", "Running", "Trail")),
    Filters(category=("Nope",)),
    Filters(price_min=20.0),
    Filters(price_max=20.0),
    Filters(price_min=30.0, price_max=30.0),
    Filters(in_stock=True),
    Filters(in_stock=False),
    Filters(domain="us", brand="initech", category=("Home",), price_max=80.0, in_stock=True),
]


@pytest.mark.parametrize("f", FILTERS, ids=str)
def test_flat_filters_match_brute_force(f: Filters) -> None:
    rows = catalog()
    encoder = HashEncoder()
    retriever = DenseRetriever(encoder=encoder).index(make_products(rows))
    for query in ("red shoe", "wood desk lamp"):
        got = retriever.retrieve(query, k=25, filters=f)
        want, true_score = brute_force(rows, encoder, query, 25, f)
        # exact up to ties: the same scores, each the true score of a passing product
        np.testing.assert_allclose(got.scores, [true_score[k] for k in want], atol=1e-6)
        np.testing.assert_allclose(got.scores, [true_score[k] for k in got.keys], atol=1e-6)
        by_key = {(r["domain"], r["product_id"]): r for r in rows}
        assert all(passes(by_key[key], f) for key in got.keys)
        assert got.total == sum(passes(r, f) for r in rows)


@pytest.mark.parametrize("exact_limit", [0, 50, 10_000])
@pytest.mark.parametrize("f", FILTERS, ids=str)
def test_hnsw_filters_return_k_passing_results(f: Filters, exact_limit: int) -> None:
    rows = catalog()
    encoder = HashEncoder()
    retriever = DenseRetriever(
        encoder=encoder, hnsw_threshold=0, hnsw_m=8, ef_search=16, exact_limit=exact_limit
    ).index(make_products(rows))
    by_key = {(r["domain"], r["product_id"]): r for r in rows}
    n_pass = sum(passes(r, f) for r in rows)
    for query in ("red shoe", "wood desk lamp", "phone"):
        got = retriever.retrieve(query, k=40, filters=f)
        assert len(got) == min(40, n_pass)
        assert all(passes(by_key[key], f) for key in got.keys)
        assert len(set(got.keys)) == len(got.keys)
        want, true_score = brute_force(rows, encoder, query, 40, f)
        if want:  # recall of the reference's scores, robust to ties
            floor = true_score[want[-1]] - 1e-6
            found = sum(true_score[key] >= floor for key in got.keys)
            assert found / len(want) >= 0.9


def test_hnsw_recall_against_exact_on_random_vectors() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((2_100, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items, queries = vectors[:2_000], vectors[2_000:]
    encoder = TableEncoder(vectors)
    products = make_products([{"product_id": str(i), "title": f"v{i}"} for i in range(2_000)])
    retriever = DenseRetriever(encoder=encoder, hnsw_threshold=1_000).index(products)
    assert retriever.index_ is not retriever.exact_index_  # HNSW
    recalls = []
    for q in range(100):
        got = retriever.retrieve(f"v{2_000 + q}", k=10)
        exact = np.argsort(-(items @ queries[q]))[:10]
        recalls.append(len({int(pid) for _, pid in got.keys} & set(exact.tolist())) / 10)
        true = items[[int(p) for _, p in got.keys]] @ queries[q]
        np.testing.assert_allclose(got.scores, true, atol=1e-6)
    assert np.mean(recalls) >= 0.95


def test_scores_are_cosine_best_first_and_many_equals_one() -> None:
    rows = catalog(100)
    encoder = HashEncoder()
    retriever = DenseRetriever(encoder=encoder).index(make_products(rows))
    queries = ["red shoe", "lamp", "red shoe", "steel table"]
    many = retriever.retrieve_many(queries, k=5, filters=Filters(in_stock=True))
    for query, got in zip(queries, many, strict=True):
        one = retriever.retrieve(query, k=5, filters=Filters(in_stock=True))
        assert got.keys == one.keys
        np.testing.assert_allclose(got.scores, one.scores, rtol=1e-6)
        assert np.all(np.diff(got.scores) <= 0)
        assert np.all(got.scores <= 1.0 + 1e-6)
    assert retriever.retrieve_many([], k=5) == []


def test_query_vectors_are_cached_lru() -> None:
    encoder = HashEncoder()
    retriever = DenseRetriever(encoder=encoder, query_cache_size=2)
    retriever.index(make_products(catalog(20)))
    for query in ("a", "b", "a", "c", "a", "b"):
        retriever.retrieve(query, k=3)
    assert encoder.query_calls == [["a"], ["b"], ["c"], ["b"]]
    retriever.retrieve_many(["d", "d", "a"], k=3)
    assert encoder.query_calls[-1] == ["d"]


def test_k_larger_than_matches_and_bad_k() -> None:
    retriever = DenseRetriever(encoder=HashEncoder()).index(make_products(catalog(10)))
    assert len(retriever.retrieve("red", k=100)) == 10
    assert len(retriever.retrieve("red", k=100, filters=Filters(domain="xx"))) == 0
    with pytest.raises(InvalidInputError, match="k=0"):
        retriever.retrieve("red", k=0)


def test_unindexed_and_bad_input_fail_clearly(tmp_path: Path) -> None:
    retriever = DenseRetriever(encoder=HashEncoder())
    with pytest.raises(NotFittedError):
        retriever.retrieve("red")
    with pytest.raises(NotFittedError):
        retriever.save(tmp_path)
    with pytest.raises(NotFittedError):
        retriever.delete([("us", "p1")])
    rows = catalog(3)
    with pytest.raises(InvalidInputError, match="lacks columns"):
        retriever.index(make_products(rows).drop_columns(["brand"]))
    with pytest.raises(InvalidInputError, match="rebuild_fraction"):
        DenseRetriever(encoder=HashEncoder(), rebuild_fraction=0)
    with pytest.raises(WorkspaceError, match="no dense index"):
        DenseRetriever.load(tmp_path / "missing")


@pytest.mark.parametrize("hnsw_threshold", [0, 10_000])
def test_upsert_and_delete(hnsw_threshold: int) -> None:
    rows = catalog(60)
    encoder = HashEncoder()
    retriever = DenseRetriever(encoder=encoder, hnsw_threshold=hnsw_threshold)
    retriever.upsert(make_products(rows))  # first upsert indexes
    before = retriever.index_

    new = {"domain": "us", "product_id": "n1", "title": "zebra striped umbrella"}
    retriever.upsert(make_products([new]))
    assert retriever.retrieve("zebra umbrella", k=1).keys == [("us", "n1")]

    changed = {**rows[2], "title": "purple kangaroo mug"}
    retriever.upsert(make_products([changed]))
    assert retriever.retrieve("kangaroo mug", k=1).keys == [("us", "p2")]
    assert [k for k in retriever.retrieve("x", k=100).keys if k == ("us", "p2")] == [("us", "p2")]

    encoder.item_calls.clear()
    restocked = {**rows[4], "in_stock": not rows[4]["in_stock"], "price": 55.5}
    retriever.upsert(make_products([restocked]))
    row = retriever.rows_.row_of[("us", "p4")]
    assert retriever.rows_.price[row] == 55.5
    assert retriever.rows_.in_stock[row] == restocked["in_stock"]
    got = retriever.retrieve(rows[4]["title"], k=1, filters=Filters(price_min=55.5, price_max=55.5))
    assert got.keys == [("us", "p4")]

    assert retriever.delete([("us", "n1"), ("us", "n1"), ("zz", "missing")]) == 1
    assert ("us", "n1") not in retriever.retrieve("zebra umbrella", k=100).keys
    assert retriever.retrieve("x", k=1000).total == 60
    if hnsw_threshold == 0:
        assert retriever.index_ is before  # tombstones, no rebuild yet
        assert len(retriever.rows_) > retriever.rows_.n_alive
    else:
        assert len(retriever.rows_) == retriever.rows_.n_alive == 60


def test_hnsw_rebuilds_past_tombstone_fraction_and_flat_grows_into_hnsw() -> None:
    rows = catalog(100)
    retriever = DenseRetriever(encoder=HashEncoder(), hnsw_threshold=0, rebuild_fraction=0.2)
    retriever.index(make_products(rows))
    first = retriever.index_
    retriever.delete([(r["domain"], r["product_id"]) for r in rows[:20]])
    assert retriever.index_ is first
    assert len(retriever.rows_) == 100
    retriever.delete([(rows[20]["domain"], rows[20]["product_id"])])
    assert retriever.index_ is not first
    assert len(retriever.rows_) == 79
    assert retriever.index_.ntotal == 79
    got = retriever.retrieve(rows[50]["title"], k=1)
    assert got.keys == [(rows[50]["domain"], rows[50]["product_id"])]

    growing = DenseRetriever(encoder=HashEncoder(), hnsw_threshold=50)
    growing.index(make_products(rows[:50]))
    assert growing.index_ is growing.exact_index_
    growing.upsert(make_products(rows[50:]))
    assert growing.index_ is not growing.exact_index_
    assert growing.index_.ntotal == 100


@pytest.mark.parametrize("hnsw_threshold", [0, 10_000])
def test_save_load_round_trip(tmp_path: Path, hnsw_threshold: int) -> None:
    with ENCODERS.registered(HashEncoder.name, HashEncoder):
        rows = catalog(80)
        retriever = DenseRetriever(encoder=HashEncoder(size=32), hnsw_threshold=hnsw_threshold)
        retriever.index(make_products(rows))
        retriever.delete([("us", "p0"), ("de", "p1")])
        retriever.upsert(make_products([{**rows[2], "title": "new words here", "price": None}]))
        retriever.save(tmp_path / "dense")
        assert sorted(p.name for p in (tmp_path / "dense").iterdir()) == [
            "config.json",
            "index.faiss",
            "rows.parquet",
        ]

        loaded = DenseRetriever.load(tmp_path / "dense")
        assert isinstance(loaded.encoder, HashEncoder)
        assert loaded.encoder.size == 32
        assert loaded.get_config() == retriever.get_config()
        np.testing.assert_array_equal(loaded.vectors_, retriever.vectors_)
        for f in FILTERS:
            for query in ("red shoe", "new words"):
                a = retriever.retrieve(query, k=20, filters=f)
                b = loaded.retrieve(query, k=20, filters=f)
                assert a.keys == b.keys
                assert a.total == b.total
                np.testing.assert_allclose(a.scores, b.scores)
        loaded.upsert(make_products([{"product_id": "n9", "title": "giraffe kite"}]))
        assert loaded.retrieve("giraffe kite", k=1).keys == [("us", "n9")]

        with pytest.raises(InvalidInputError, match="built with encoder 'test-hash'"):
            DenseRetriever.load(
                tmp_path / "dense", encoder=TableEncoder(np.eye(4, dtype=np.float32))
            )


def test_embedding_cache_encodes_only_new_or_changed_texts(tmp_path: Path) -> None:
    rows = catalog(50)
    cache_dir = tmp_path / "cache" / "embeddings"
    first = HashEncoder()
    DenseRetriever(encoder=first, cache_dir=cache_dir).index(make_products(rows))
    assert sum(len(c) for c in first.item_calls) == 50
    assert list((cache_dir / "test-hash").glob("shard-*.npy"))

    again = HashEncoder()
    retriever = DenseRetriever(encoder=again, cache_dir=cache_dir).index(make_products(rows))
    assert again.item_calls == []

    edited = [*rows[:-1], {**rows[-1], "title": "brand new title"}]
    retriever.index(make_products(edited))
    assert again.item_calls == [[product_texts(make_products(edited[-1:]))[0]]]
    restocked = [{**r, "in_stock": not r["in_stock"]} for r in edited]
    retriever.upsert(make_products(restocked))
    assert len(again.item_calls) == 1


def test_progress_is_reported() -> None:
    seen: list[tuple[int, int]] = []
    DenseRetriever(encoder=HashEncoder()).index(
        make_products(catalog(10)), progress=lambda done, total: seen.append((done, total))
    )
    assert seen[-1] == (10, 10)


def test_save_load_without_categories_or_prices(tmp_path: Path) -> None:
    rows = [{"product_id": f"p{i}", "title": f"thing {i}", "price": None} for i in range(5)]
    retriever = DenseRetriever(encoder=HashEncoder()).index(make_products(rows))
    retriever.save(tmp_path)
    loaded = DenseRetriever.load(tmp_path, encoder=HashEncoder())
    assert loaded.retrieve("thing 3", k=1).keys == [("us", "p3")]
    assert len(loaded.retrieve("thing", k=5, filters=Filters(category=("A",)))) == 0
    assert len(loaded.retrieve("thing", k=5, filters=Filters(price_max=1e9))) == 0


def test_a_key_given_twice_keeps_its_last_row() -> None:
    rows = catalog(3)
    twice = [rows[0], rows[1], {**rows[0], "title": "llama wool scarf"}]
    retriever = DenseRetriever(encoder=HashEncoder()).index(make_products(twice))
    assert len(retriever.rows_) == 2
    assert retriever.retrieve("llama wool scarf", k=1).keys == [("us", "p0")]
    retriever.upsert(make_products([rows[2], {**rows[2], "title": "otter canoe"}]))
    assert retriever.retrieve("otter canoe", k=1).keys == [("us", "p2")]
    assert retriever.retrieve("x", k=10).total == 3


def _market_retriever(rows: list[dict[str, Any]]) -> DenseRetriever:
    """HNSW with a graph per market: every market has more than ``exact_limit`` rows."""
    return DenseRetriever(
        encoder=HashEncoder(size=32), hnsw_threshold=0, hnsw_m=8, ef_search=16, exact_limit=50
    ).index(make_products(rows))


def test_each_large_market_gets_its_own_graph_searched_under_its_filter() -> None:
    rows = catalog(300)  # 150 in us, 150 in de
    retriever = _market_retriever(rows)
    assert {d: g.ntotal for d, g in retriever.market_graphs_.items()} == {"us": 150, "de": 150}
    by_key = {(r["domain"], r["product_id"]): r for r in rows}
    for query in ("red shoe", "wood desk lamp"):
        got = retriever.retrieve(query, k=40, filters=Filters(domain="de"))
        assert len(got) == 40
        assert {key[0] for key in got.keys} == {"de"}
        want, true_score = brute_force(rows, retriever.encoder, query, 40, Filters(domain="de"))
        floor = true_score[want[-1]] - 1e-6
        assert sum(true_score[key] >= floor for key in got.keys) / 40 >= 0.9
        assert all(by_key[key]["domain"] == "de" for key in got.keys)
    alone = [{**row, "domain": "us"} for row in rows]
    assert _market_retriever(alone).market_graphs_ == {}  # one market: the whole index is it
    flat = DenseRetriever(encoder=HashEncoder(size=32)).index(make_products(rows))
    assert flat.market_graphs_ == {}


def test_market_graphs_follow_upserts_deletes_and_a_save(tmp_path: Path) -> None:
    with ENCODERS.registered(HashEncoder.name, HashEncoder):
        retriever = _market_retriever(catalog(300))
        new = {"domain": "de", "product_id": "n1", "title": "zebra striped umbrella"}
        retriever.upsert(make_products([new]))
        assert retriever.market_graphs_["de"].ntotal == 151
        de = Filters(domain="de")
        assert retriever.retrieve("zebra umbrella", k=1, filters=de).keys == [("de", "n1")]
        assert retriever.delete([("de", "n1")]) == 1
        assert ("de", "n1") not in retriever.retrieve("zebra umbrella", k=100, filters=de).keys
        retriever.save(tmp_path / "dense")
        loaded = DenseRetriever.load(tmp_path / "dense")
        assert set(loaded.market_graphs_) == {"us", "de"}
        for query in ("red shoe", "phone"):
            a = retriever.retrieve(query, k=20, filters=de)
            b = loaded.retrieve(query, k=20, filters=de)
            assert a.keys == b.keys
        # a folder saved before market graphs: every market searches the whole index
        config = orjson.loads((tmp_path / "dense" / "config.json").read_bytes())
        del config["market_graphs"]
        (tmp_path / "dense" / "config.json").write_bytes(orjson.dumps(config))
        older = DenseRetriever.load(tmp_path / "dense")
        assert older.market_graphs_ == {}
        got = older.retrieve("red shoe", k=20, filters=de)
        assert {key[0] for key in got.keys} == {"de"}
