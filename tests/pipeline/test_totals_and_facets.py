"""What ``total`` and the facets mean (issue 13, items 1-3): both count the matched set, the same
on every page; a query that matches nothing has no results, and says so."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from shopsearch.catalog.candidates import Filters
from shopsearch.catalog.lookup import ProductLookup
from shopsearch.config import Settings
from shopsearch.datasets.base import LoadedData
from shopsearch.ingest.workspace import ingest
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.progress import Progress
from shopsearch.retrieval.dense import DenseRetriever
from shopsearch.retrieval.hybrid import HybridRetriever
from shopsearch.retrieval.lexical import LexicalRetriever
from shopsearch.store.workspace import Workspace
from shopsearch.text.encoders import ENCODERS, Encoder, FloatMatrix

#: 30 shoes, 12 sofas, 8 lamps; brands and categories set so facet sums can be checked.
ROWS = (
    [("us", f"s{i}", f"Trail running shoes model {i}", "Swift" if i % 3 else "Bolt",
      "Apparel > Shoes", 50.0 + i) for i in range(30)]
    + [("us", f"f{i}", f"Grey linen sofa {i}", "Acme", "Furniture > Sofas", 400.0 + i)
       for i in range(12)]
    + [("us", f"l{i}", f"Brass desk lamp {i}", "Lumma", "Home > Lighting", 80.0 + i)
       for i in range(8)]
)  # fmt: skip
PRODUCTS = pd.DataFrame(ROWS, columns=["domain", "product_id", "title", "brand", "category",
                                       "price"])  # fmt: skip
SYNONYMS = {"settee": "sofa", "couch": "sofa"}


class SynonymEncoder(Encoder):
    """One dimension per word after a synonym map: "settee" lands on "sofa" (a stand-in for
    MiniLM: products sharing no word with the query are far from it)."""

    name = "test-synonyms"
    config_keys: ClassVar[list[str]] = []
    vocabulary: ClassVar[dict[str, int]] = {}

    @property
    def dim(self) -> int:
        return 2048

    def _encode(self, texts: Sequence[str]) -> FloatMatrix:
        out = np.zeros((len(texts), 2048), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                word = SYNONYMS.get(word, word)
                column = self.vocabulary.setdefault(word, min(len(self.vocabulary), 2047))
                out[row, column] += 1.0
        unit: FloatMatrix = out / np.linalg.norm(out, axis=1, keepdims=True)
        return unit

    def encode_queries(self, texts: Sequence[str]) -> FloatMatrix:
        return self._encode(texts)

    def encode_items(self, texts: Sequence[str], progress: Progress | None = None) -> FloatMatrix:
        return self._encode(texts)


@pytest.fixture
def engine() -> Iterator[Engine]:
    with ENCODERS.registered(SynonymEncoder.name, SynonymEncoder):
        products = _table()
        sources = {
            "lexical": LexicalRetriever().index(products),
            "dense": DenseRetriever(encoder=SynonymEncoder()).index(products),
        }
        yield Engine(HybridRetriever(sources), ProductLookup(products), Settings())


def _table():  # type: ignore[no-untyped-def]
    import tempfile
    from pathlib import Path

    root = Path(tempfile.mkdtemp()) / "ws"
    ws = Workspace.create(root)
    ingest(ws, LoadedData("generic", products=PRODUCTS), add_domains=True)
    return ws.table("products")


def test_total_is_the_matched_set_on_every_page(engine: Engine) -> None:
    totals = {
        page: engine.search(SearchParams("shoes", page=page, size=size)).total
        for page, size in [(1, 10), (2, 10), (3, 10), (1, 100), (50, 2)]
    }
    assert set(totals.values()) == {30}
    last = engine.search(SearchParams("shoes", page=3, size=10))
    assert len(last.items) == 10
    assert engine.search(SearchParams("shoes", page=4, size=10)).items == []


def test_facets_count_the_same_products_as_total(engine: Engine) -> None:
    for params in [
        SearchParams("shoes"),
        SearchParams("shoes", filters=Filters(brand="Swift")),
        SearchParams("grey sofa", filters=Filters(price_max=405.0)),
        SearchParams("settee"),  # matched by the vector source only
    ]:
        response = engine.search(params)
        facets = response.facets
        assert sum(facets["brand"].values()) == response.total, params
        tops = {k: v for k, v in facets["category"].items() if " > " not in k}
        assert sum(tops.values()) == response.total, params
        assert sum(facets["price"].values()) == response.total, params
    swift = engine.search(SearchParams("shoes", filters=Filters(brand="Swift")))
    assert swift.total == 20


def test_a_vector_match_counts_and_a_loose_neighbour_does_not(engine: Engine) -> None:
    settee = engine.search(SearchParams("settee", size=50))
    assert settee.total == 12
    assert {item.product_id[0] for item in settee.items} == {"f"}
    assert settee.facets["category"] == {"Furniture": 12, "Furniture > Sofas": 12}


def test_nothing_matches_nonsense(engine: Engine) -> None:
    response = engine.search(SearchParams("qwxzzkjv"))
    assert response.total == 0
    assert response.items == []
    assert response.notice == "no results for 'qwxzzkjv'"
    assert response.suggestion is None
    assert all(sum(counts.values()) == 0 for counts in response.facets.values())


def test_filters_that_leave_nothing_suggest_the_search_without_them(engine: Engine) -> None:
    response = engine.search(SearchParams("shoes", filters=Filters(brand="Lumma", price_max=100.0)))
    assert response.total == 0
    assert response.notice is not None
    assert "with these filters" in response.notice
    assert response.suggestion is not None
    assert response.suggestion.query == "shoes"
    assert response.suggestion.dropped == ("brand", "price")
    assert response.suggestion.total == 30


def test_a_complete_lexical_list_skips_the_matching_query(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lexical source's whole matching set is in its list when its total fits, so no other
    candidate can be in it; a cut list still asks which of the others match."""
    hybrid = engine.retrieval
    lexical = hybrid.sources["lexical"]
    asked: list[int] = []
    real = lexical.matching_keys

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        asked.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(lexical, "matching_keys", counting)
    whole = engine.search(SearchParams("shoes", size=50))
    assert (whole.total, asked) == (30, [])
    monkeypatch.setattr(hybrid, "per_source_k", 10)
    cut = hybrid.search("shoes", 10, Filters(domain="us"))
    assert len(asked) == 1
    assert cut.candidates.total == 30
    assert len(cut.candidates) == 10
