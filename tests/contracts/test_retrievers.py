"""The Retriever contract, checked on every registered candidate source.

Each test is parametrized over ``RETRIEVERS.names()``: a newly registered retriever is checked
automatically, and fails :func:`test_every_retriever_has_a_builder` until :data:`BUILDERS` says
how to build it on the contract catalog.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from shopsearch.catalog.candidates import Candidates, Filters, ProductKey
from shopsearch.errors import InvalidInputError, NotFittedError
from shopsearch.retrieval.base import Retriever
from shopsearch.retrieval.consistent_index import LearnedCIRetriever
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.generative.genrec_retriever import GenRecRetriever
from shopsearch.retrieval.generative.model import GeneratorConfig
from shopsearch.retrieval.generative.retriever import GenerativeRetriever
from shopsearch.retrieval.generative.train import GenerativeConfig, train_generative
from shopsearch.retrieval.generative.trained import GenerativeModel
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.learned import LearnedDenseRetriever, LearnedPQRetriever
from shopsearch.retrieval.learned_train import Learned, item_texts
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.retrieval.mmse_samples import StagedSamples
from shopsearch.retrieval.registry import RETRIEVERS

from ..retrieval.test_dense import WORDS, HashEncoder, catalog, make_products, passes
from ..retrieval.test_genrec_source import genrec_model
from .conftest import CATALOG_SIZE


@dataclass(frozen=True)
class Builder:
    """How to build one registered retriever for the contract.

    Attributes:
        build: a fresh, *unindexed* retriever; its argument gives the learned models trained
            on the contract catalog (trained on first use).
        min_recall: the source's recall@k against brute force over its own vectors (sources
            with ``vectors``): 1.0 for an exact index, lower for an approximate one (HNSW, PQ).
        variant: tells two builders of one retriever apart in test ids.
    """

    build: Callable[[Callable[[], Learned]], Retriever]
    min_recall: float = 1.0
    variant: str = ""


def _learned_pq(learned: Callable[[], Learned]) -> Retriever:
    trained = learned().retrievers["two-tower-pq"]
    assert isinstance(trained, LearnedPQRetriever)
    return LearnedPQRetriever(trained.encoder, quantizer=trained.quantizer)


@functools.cache
def _generative_model() -> GenerativeModel:
    """A tiny generator trained on the contract catalog's judgments (as ``learned``)."""
    products = make_products(catalog(CATALOG_SIZE))
    texts = item_texts(products)
    titles = dict(zip(texts, products.column("title").to_pylist(), strict=True))
    qrels: dict[str, dict[ProductKey, float]] = {
        f"{word}s": {key: 3.0 for key, title in titles.items() if word in title.split()}
        for word in WORDS
    }
    sizes = GeneratorConfig(dim=16, heads=2, layers=1, memory=2, epochs=5, batch_size=32)
    config = GenerativeConfig(levels=2, depth=3, codewords=4, generator=sizes)
    return train_generative(
        StagedSamples.from_judgments(qrels, texts), list(texts), HashEncoder(), config
    )


@functools.cache
def _genrec_model() -> GenerativeModel:
    """A tiny GenRec model trained on logged searches of the contract catalog."""
    return genrec_model(make_products(catalog(CATALOG_SIZE)), epochs=5)


#: Registered retriever name → how to build it (one or more variants). Add an entry when you
#: register a retriever.
BUILDERS: dict[str, tuple[Builder, ...]] = {
    "lexical": (Builder(lambda _: LexicalRetriever()),),
    "dense": (
        Builder(lambda _: DenseRetriever(encoder=HashEncoder()), variant="flat"),
        # HNSW from the first product, a narrow beam, filtered searches through the graph
        Builder(
            lambda _: DenseRetriever(
                encoder=HashEncoder(), hnsw_threshold=0, hnsw_m=4, ef_search=8, exact_limit=0
            ),
            min_recall=0.9,  # measured: 0.98 on average
            variant="hnsw",
        ),
    ),
    "learned-dense": (
        Builder(lambda learned: LearnedDenseRetriever(learned().encoder), variant="two-tower"),
        Builder(
            lambda learned: LearnedDenseRetriever(learned().retrievers["gcn"].encoder),
            variant="gcn",
        ),
        Builder(
            lambda learned: LearnedDenseRetriever(learned().retrievers["sci-two-tower"].encoder),
            variant="sci-two-tower",
        ),
    ),
    "learned-ci": (
        Builder(
            lambda learned: LearnedCIRetriever(learned().retrievers["sci-two-tower"].encoder),
            variant="dual",
        ),
        # 2 of 9 clusters probed: approximate, and filters often fall back to exact search
        Builder(
            lambda learned: LearnedCIRetriever(learned().encoder, view="item", nprobe=2),
            min_recall=0.3,
            variant="item-2probes",
        ),
    ),
    # 8 sub-vectors of 6-bit learned codes per 48-d vector: an approximation of the float
    # vectors (measured: recall@10 0.9 on average)
    "learned-pq": (Builder(_learned_pq, min_recall=0.7),),
    "generative": (Builder(lambda _: GenerativeRetriever(_generative_model())),),
    "genrec": (Builder(lambda _: GenRecRetriever(_genrec_model())),),
    "hybrid": (
        Builder(
            lambda _: HybridRetriever(
                {"lexical": LexicalRetriever(), "dense": DenseRetriever(encoder=HashEncoder())},
                per_source_k=20,
            )
        ),
    ),
}


def _cases() -> list[Any]:
    """``(name, builder)`` per builder of every registered name; ``builder`` is ``None`` for a
    name without one (its tests fail and say what to add)."""
    cases = []
    for name in RETRIEVERS.names():
        builders = BUILDERS.get(name) or (None,)
        for builder in builders:
            variant = builder.variant if builder is not None else ""
            cases.append(pytest.param(name, builder, id=f"{name}-{variant}" if variant else name))
    return cases


CASES = _cases()
NAMES = RETRIEVERS.names()
#: Several words of the catalog: the lexical source matches many products, not all.
QUERY = "red shoe lamp"
QUERIES = (QUERY, "wood desk", "blue cotton running table")
#: Queries of the ordering checks: also no words at all (browsing) and words of no product.
ODD_QUERIES = ("", "?!", "xylophone quartz")
FILTERS = [
    Filters(domain="de"),
    Filters(domain="fr"),
    Filters(brand="acme"),
    Filters(brand="gLoBeX"),
    Filters(brand=""),
    Filters(category=()),
    Filters(category=("Home",)),
    Filters(category=("Home", "Sofas")),
    Filters(category=("Sport", "Shoes", "Running")),
    Filters(category=("Sport", "Shoes", "Running", "Trail")),
    Filters(price_min=20.0),
    Filters(price_max=20.0),
    Filters(price_min=30.0, price_max=60.0),
    Filters(price_min=0.0, price_max=1e9),
    Filters(in_stock=False),
    Filters(domain="us", brand="initech", category=("Home",), price_max=80.0, in_stock=True),
]
NEW: dict[str, Any] = {
    "domain": "us",
    "product_id": "new-1",
    "title": "zebra striped umbrella",
    "price": 12.0,
}


@pytest.fixture
def build(
    request: pytest.FixtureRequest, hash_encoder: type[HashEncoder]
) -> Callable[[str, Builder | None], Retriever]:
    """``build(name, builder)``: a fresh unindexed retriever of that registered name."""

    def learned() -> Learned:
        trained: Learned = request.getfixturevalue("learned")
        return trained

    def make(name: str, builder: Builder | None) -> Retriever:
        if builder is None:
            pytest.fail(
                f"retriever {name!r} is registered but tests/contracts/test_retrievers.py has "
                f"no builder for it: add BUILDERS[{name!r}] = (Builder(lambda learned: ...),) "
                "returning an unindexed instance (with its min_recall if it is approximate)"
            )
        retriever = builder.build(learned)
        assert RETRIEVERS.get(name) is type(retriever)
        return retriever

    return make


@pytest.fixture
def indexed(
    build: Callable[[str, Builder | None], Retriever], products: pa.Table
) -> Callable[[str, Builder | None], Retriever]:
    """``indexed(name, builder)``: a fresh retriever, indexed on the contract catalog."""

    def make(name: str, builder: Builder | None) -> Retriever:
        retriever = build(name, builder)
        assert retriever.index(products) is retriever
        return retriever

    return make


def _everything(retriever: Retriever, query: str, filters: Filters | None = None) -> Candidates:
    """Every product the retriever returns for ``query`` (k above the catalog size)."""
    return retriever.retrieve(query, k=1000, filters=filters)


@pytest.mark.parametrize("name", NAMES)
def test_every_retriever_has_a_builder(name: str) -> None:
    assert BUILDERS.get(name), (
        f"retriever {name!r} is registered but has no entry in BUILDERS "
        "(tests/contracts/test_retrievers.py); add one so the contract checks it"
    )
    assert RETRIEVERS.name_of(RETRIEVERS.get(name)) == name


def test_builders_name_only_registered_retrievers() -> None:
    assert set(BUILDERS) <= set(NAMES)


@pytest.mark.parametrize(("name", "builder"), CASES)
def test_unfitted_use_raises_not_fitted(
    name: str,
    builder: Builder | None,
    build: Callable[[str, Builder | None], Retriever],
    tmp_path: Path,
) -> None:
    retriever = build(name, builder)
    with pytest.raises(NotFittedError):
        retriever.retrieve(QUERY, k=5)
    with pytest.raises(NotFittedError):
        retriever.search(QUERY, k=5)
    with pytest.raises(NotFittedError):
        retriever.retrieve_many([QUERY, "lamp"], k=5)
    with pytest.raises(NotFittedError):
        retriever.save(tmp_path / "never")
    if "updates" in retriever.capabilities:
        with pytest.raises(NotFittedError):
            retriever.delete([("us", "p1")])


@pytest.mark.parametrize(("name", "builder"), CASES)
def test_results_are_best_first_and_k_is_respected(
    name: str, builder: Builder | None, indexed: Callable[[str, Builder | None], Retriever]
) -> None:
    retriever = indexed(name, builder)
    for query in (*QUERIES, *ODD_QUERIES):
        everything = _everything(retriever, query)
        assert len(everything) > 0 or query in ODD_QUERIES
        for k in (1, 3, 10):
            got = retriever.retrieve(query, k=k)
            assert len(got) == min(k, len(everything))
            assert len(got.scores) == len(got.keys)
            assert len(set(got.keys)) == len(got.keys)
            assert np.all(np.isfinite(got.scores))
            assert np.all(np.diff(got.scores) <= 0), f"{name}: not best first: {got.scores}"
            assert got.total is None or got.total >= len(got)
            assert [c.keys for c in retriever.retrieve_many([query, query], k=k)] == [
                got.keys,
                got.keys,
            ]
    with pytest.raises(InvalidInputError, match="k=0"):
        retriever.retrieve(QUERY, k=0)


@pytest.mark.parametrize(("name", "builder"), CASES)
def test_filters_are_respected(
    name: str,
    builder: Builder | None,
    indexed: Callable[[str, Builder | None], Retriever],
    catalog_rows: list[dict[str, Any]],
) -> None:
    retriever = indexed(name, builder)
    by_key = {(r["domain"], r["product_id"]): r for r in catalog_rows}
    unfiltered = set(_everything(retriever, QUERY).keys)
    for f in FILTERS:
        got = retriever.retrieve(QUERY, k=5, filters=f)
        assert len(got) <= 5
        assert all(passes(by_key[key], f) for key in got.keys), f"{name} ignores {f}"
        assert np.all(np.diff(got.scores) <= 0)
        # nothing that passes is lost: the filtered set is the unfiltered set cut by the filter
        everything = _everything(retriever, QUERY, f)
        passing = {key for key in unfiltered if passes(by_key[key], f)}
        assert set(everything.keys) == passing, f"{name} with {f}"


@pytest.mark.parametrize(("name", "builder"), CASES)
def test_save_load_round_trip(
    name: str,
    builder: Builder | None,
    indexed: Callable[[str, Builder | None], Retriever],
    tmp_path: Path,
) -> None:
    retriever = indexed(name, builder)
    updates = "updates" in retriever.capabilities
    if updates:  # what a served bundle saves: an index changed in place since it was built
        retriever.upsert(make_products([NEW]))
        retriever.delete([("us", "p0"), ("de", "p1")])
    retriever.save(tmp_path / name)
    loaded = RETRIEVERS.get(name).load(tmp_path / name)
    assert type(loaded) is type(retriever)
    assert loaded.capabilities == retriever.capabilities
    assert loaded.vector_space == retriever.vector_space
    for query in (*QUERIES, NEW["title"]):
        for f in (None, *FILTERS[::2]):
            want = retriever.retrieve(query, k=10, filters=f)
            got = loaded.retrieve(query, k=10, filters=f)
            assert got.keys == want.keys, f"{name}: {query!r} {f}"
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6, atol=1e-7)
    if updates:  # a loaded index goes on updating
        assert ("us", "p0") not in _everything(loaded, QUERY).keys
        loaded.upsert(make_products([{**NEW, "product_id": "new-2", "title": "kiwi kayak"}]))
        assert ("us", "new-2") in _everything(loaded, "kiwi kayak").keys
        assert loaded.delete([("us", "new-1")]) == 1


@pytest.mark.parametrize(("name", "builder"), CASES)
def test_facets_capability(
    name: str, builder: Builder | None, indexed: Callable[[str, Builder | None], Retriever]
) -> None:
    retriever = indexed(name, builder)
    hits = retriever.search(QUERY, k=5)
    if "facets" not in retriever.capabilities:
        assert hits.facets is None
        return
    assert hits.facets is not None
    assert set(hits.facets) >= {"category", "brand", "price"}
    matched = hits.candidates.total
    for counts in hits.facets.values():
        assert all(isinstance(n, int) and n > 0 for n in counts.values())
        assert matched is None or all(n <= matched for n in counts.values())
    acme = retriever.search(QUERY, k=5, filters=Filters(brand="acme")).facets
    assert acme is not None
    assert acme["brand"]
    assert {brand.lower() for brand in acme["brand"]} == {"acme"}


@pytest.mark.parametrize(("name", "builder"), CASES)
def test_vectors_capability(
    name: str, builder: Builder | None, indexed: Callable[[str, Builder | None], Retriever]
) -> None:
    retriever = indexed(name, builder)
    hits = retriever.search(QUERY, k=5)
    if "vectors" not in retriever.capabilities:
        assert hits.query_vector is None
        assert retriever.vector_space is None
        return
    assert isinstance(retriever, DenseRetriever)  # the sources with vectors
    assert isinstance(retriever.vector_space, str)
    assert retriever.vector_space
    vectors = retriever.vectors_
    assert vectors.dtype == np.float32
    assert vectors.shape[0] == len(retriever.rows_)
    assert hits.query_vector is not None
    assert hits.query_vector.dtype == np.float32
    assert hits.query_vector.shape == (vectors.shape[1],)
    np.testing.assert_array_equal(retriever.query_vectors([QUERY])[0], hits.query_vector)
    rows = retriever.rows_of([*hits.candidates.keys, ("nowhere", "nothing")])
    assert np.all(rows[:-1] >= 0)
    assert rows[-1] == -1


@pytest.mark.parametrize(("name", "builder"), CASES)
def test_search_recall_against_brute_force(
    name: str, builder: Builder | None, indexed: Callable[[str, Builder | None], Retriever]
) -> None:
    """Exact sources return the true top k by inner product; approximate ones (HNSW, PQ) find
    at least ``min_recall`` of it, measured on the source's own vectors."""
    retriever = indexed(name, builder)
    if "vectors" not in retriever.capabilities:
        assert retriever.search(QUERY, k=5).query_vector is None
        return
    assert isinstance(retriever, DenseRetriever)
    assert builder is not None
    floor = builder.min_recall
    assert len(retriever.vectors_) == retriever.rows_.n_alive  # a fresh index: no dead rows
    recalls = []
    for query in (*QUERIES, "steel", "green phone case", "cotton"):
        k = 10
        hits = retriever.search(query, k=k)
        assert hits.query_vector is not None
        true = retriever.vectors_ @ hits.query_vector
        best = np.sort(true)[::-1][:k]
        got = [true[retriever.rows_.row_of[key]] for key in hits.candidates.keys]
        # recall of the true top k, robust to ties at the cut
        recalls.append(sum(score >= best[-1] - 1e-6 for score in got) / k)
        if floor == 1.0:
            np.testing.assert_allclose(np.sort(got)[::-1], best, atol=1e-5)
            np.testing.assert_allclose(hits.candidates.scores, got, atol=1e-5)
    assert np.mean(recalls) >= floor, f"{name}: recall@10 {np.mean(recalls):.2f} < {floor}"


@pytest.mark.parametrize(("name", "builder"), CASES)
def test_updates_capability(
    name: str, builder: Builder | None, indexed: Callable[[str, Builder | None], Retriever]
) -> None:
    retriever = indexed(name, builder)
    new = make_products([NEW])
    key: ProductKey = ("us", "new-1")
    if "updates" not in retriever.capabilities:
        with pytest.raises(InvalidInputError):
            retriever.upsert(new)
        with pytest.raises(InvalidInputError):
            retriever.delete([key])
        return
    before = len(_everything(retriever, NEW["title"]))
    assert retriever.upsert(new) is retriever
    found = _everything(retriever, NEW["title"])
    assert key in found.keys
    assert len(found) == before + 1
    # a second upsert of the same key replaces the product
    retriever.upsert(make_products([{**NEW, "title": "zebra striped parasol"}]))
    found = _everything(retriever, "zebra striped parasol")
    assert found.keys.count(key) == 1
    priced = Filters(price_min=12.0, price_max=12.0)
    assert key in retriever.retrieve("zebra striped parasol", k=1000, filters=priced).keys
    assert retriever.delete([key, ("zz", "unknown")]) == 1
    assert key not in _everything(retriever, "zebra striped parasol").keys
    assert retriever.delete([key]) == 0
