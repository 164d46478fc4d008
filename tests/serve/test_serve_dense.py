"""Catalog writes with dense retrieval: the vector index follows, also in the saved bundle."""

from __future__ import annotations

import pytest

from shopsearch.config import Settings
from shopsearch.pipeline.engine import Engine
from shopsearch.training.index import build_index


@pytest.mark.slow
def test_put_and_delete_reach_the_dense_index_and_its_bundle(
    tmp_path, make_workspace, serve, admin
):
    ws = make_workspace(tmp_path / "ws")
    settings = Settings(serve={"admin_token": admin["Authorization"].split()[1]})
    settings.retrieval.sources = ["lexical", "dense"]
    settings.retrieval.dense_encoder = "minilm"  # distilling model2vec from it takes minutes
    build_index(ws, settings)
    product = {"title": "Velvet chesterfield sofa", "brand": "Regal", "category": "Furniture"}
    with serve(ws, settings) as client:
        assert client.put("/products/us/9", json=product, headers=admin).status_code == 200
        found = client.get(
            "/search", params={"q": "chesterfield", "domain": "us", "explain": 1}
        ).json()["items"]
        assert found[0]["product_id"] == "9"
        assert found[0]["stages"]["retrieve.dense"] is not None
        assert client.delete("/products/us/1", headers=admin).status_code == 200
        found = client.get("/search", params={"q": "grey linen sofa"}).json()["items"]
        assert "1" not in {i["product_id"] for i in found}
    dense = Engine.load(ws, settings).retrieval.sources["dense"]
    keys = set(dense.rows_.keys[i] for i in range(len(dense.rows_)) if dense.rows_.alive[i])
    assert ("us", "9") in keys
    assert ("us", "1") not in keys
