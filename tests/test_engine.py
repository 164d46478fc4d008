from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from shopsearch.catalog.candidates import Filters
from shopsearch.config import Settings
from shopsearch.datasets.base import LoadedData
from shopsearch.errors import InvalidInputError, WorkspaceError
from shopsearch.ingest.workspace import ingest
from shopsearch.pipeline.engine import Engine, SearchParams
from shopsearch.store.workspace import Workspace
from shopsearch.training.index import build_index

PRODUCTS = pd.DataFrame(
    [
        ("us", "1", "Grey linen sofa 3 seater", "Acme", "Furniture > Sofas", 499.0, True),
        ("us", "2", "Brown leather couch", "Bolt", "Furniture > Sofas", 899.0, True),
        ("us", "3", "Noise cancelling headphones", "Sonic", "Electronics > Audio", 199.0, False),
        ("us", "4", "Trail running shoes", "Swift", "Apparel > Shoes", 89.0, True),
        ("gb", "5", "Grey armchair", "Acme", "Furniture > Chairs", 249.0, True),
    ],
    columns=["domain", "product_id", "title", "brand", "category", "price", "in_stock"],
)


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace.create(tmp_path / "ws")
    ingest(ws, LoadedData("generic", products=PRODUCTS), add_domains=True)
    return ws


def _lexical_only() -> Settings:
    settings = Settings()
    settings.retrieval.sources = ["lexical"]
    return settings


def test_search_filters_facets_pages_and_explain(workspace):
    engine = build_index(workspace, _lexical_only())
    response = engine.search(SearchParams("grey sofa", explain=True))
    assert response.items[0].product_id == "1"
    assert response.facets["brand"]["Acme"] == 2
    assert response.items[0].stages["retrieve.lexical"] is not None
    assert set(response.timings_ms) >= {"retrieve.lexical", "total"}
    only_gb = engine.search(SearchParams("grey", domain="gb"))
    assert [i.product_id for i in only_gb.items] == ["5"]
    cheap = engine.search(SearchParams("grey", filters=Filters(price_max=300.0)))
    assert [i.product_id for i in cheap.items] == ["5"]
    page2 = engine.search(SearchParams("grey", size=1, page=2))
    assert len(page2.items) == 1
    page1 = engine.search(SearchParams("grey", size=1))
    assert page2.items[0].product_id != page1.items[0].product_id


def test_request_limits_are_clear_errors(workspace):
    engine = build_index(workspace, _lexical_only())
    with pytest.raises(InvalidInputError, match="unknown domain 'fr'"):
        engine.search(SearchParams("sofa", domain="fr"))
    with pytest.raises(InvalidInputError, match="size=0"):
        engine.search(SearchParams("sofa", size=0))
    with pytest.raises(InvalidInputError, match="characters"):
        engine.search(SearchParams("x" * 10_000))


def test_load_uses_the_current_bundle_and_updates_are_incremental(workspace):
    with pytest.raises(WorkspaceError, match="shopsearch index"):
        Engine.load(workspace, _lexical_only())
    build_index(workspace, _lexical_only())
    engine = Engine.load(workspace, _lexical_only())
    assert engine.search(SearchParams("couch")).items[0].product_id == "2"
    new = workspace.table("products").slice(0, 1).to_pandas()
    new["product_id"], new["title"] = "9", "Velvet chesterfield couch"
    engine.upsert_products(pa.Table.from_pandas(new, schema=workspace.table("products").schema))
    found = {i.product_id for i in engine.search(SearchParams("chesterfield")).items}
    assert found == {"9"}


@pytest.mark.slow
def test_hybrid_with_minilm_finds_synonyms_and_nothing_for_gibberish(workspace):
    settings = Settings()
    settings.retrieval.dense_encoder = "minilm"
    engine = build_index(workspace, settings)
    dense = engine.retrieval.sources["dense"]
    assert 0 < dense.match_threshold_ < 1  # the noise level, fitted at indexing
    response = engine.search(SearchParams("couch", explain=True))
    found = {i.product_id: i.stages for i in response.items}
    assert "1" in found  # "Grey linen sofa 3 seater": no word in common, close in meaning
    assert found["1"]["retrieve.lexical"] is None
    assert found["1"]["retrieve.dense"] > dense.match_threshold_
    assert "3" not in found  # headphones: a neighbour, not a match
    nothing = engine.search(SearchParams("qwxzzkjv"))
    assert (nothing.total, nothing.items) == (0, [])
