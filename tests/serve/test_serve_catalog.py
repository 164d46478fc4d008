"""Catalog endpoints: reads, admin-token checks, and writes reaching table and live index."""

from __future__ import annotations

import pytest

from shopsearch.catalog.limits import id_problem
from shopsearch.pipeline.engine import Engine
from shopsearch.serve.catalog import read_product

SOFA = {
    "title": "Velvet chesterfield sofa",
    "description": "Deep buttoned",
    "brand": "Regal",
    "category": "Furniture > Sofas",
    "price": 1299.0,
    "attributes": {"colour": "green"},
    "in_stock": True,
}


def _ids(client, q, **params):
    body = client.get("/search", params={"q": q, **params}).json()
    return [i["product_id"] for i in body["items"]]


def test_get_product(client):
    product = client.get("/products/us/1").json()
    assert product["title"] == "Grey linen sofa 3 seater"
    assert product["category"] == ["Furniture", "Sofas"]
    assert product["attributes"] == {}
    assert set(product) == {
        "domain",
        "product_id",
        "title",
        "description",
        "brand",
        "category",
        "price",
        "attributes",
        "created_at",
        "in_stock",
    }
    missing = client.get("/products/us/999")
    assert missing.status_code == 404
    assert missing.json()["error"]["parameter"] == "product_id"


def test_put_creates_and_replaces_in_table_and_live_index(client, workspace, admin):
    created = client.put("/products/us/9", json=SOFA, headers=admin)
    assert created.status_code == 200, created.text
    assert created.json()["category"] == ["Furniture", "Sofas"]
    assert created.json()["attributes"] == {"colour": "green"}
    assert _ids(client, "chesterfield") == ["9"]
    assert (
        client.get("/search", params={"q": "sofa", "domain": "us"}).json()["facets"]["brand"][
            "Regal"
        ]
        == 1
    )
    changed = client.put(
        "/products/us/9",
        json={**SOFA, "title": "Velvet camelback sofa", "category": ["A", "B"]},
        headers=admin,
    ).json()
    assert changed["created_at"] == created.json()["created_at"]
    assert _ids(client, "chesterfield") == []
    assert _ids(client, "camelback") == ["9"]
    assert read_product(workspace, "us", "9")["category"] == ["A", "B"]
    assert client.get("/health").json()["products"] == 8


def test_delete_removes_from_table_and_live_index(client, workspace, admin, config):
    assert "2" in _ids(client, "couch")
    deleted = client.delete("/products/us/2", headers=admin)
    assert deleted.json() == {"deleted": {"domain": "us", "product_id": "2"}}
    assert _ids(client, "couch") == []
    assert client.get("/products/us/2").status_code == 404
    assert read_product(workspace, "us", "2") is None
    assert workspace.count("products") == 6
    again = client.delete("/products/us/2", headers=admin)
    assert again.status_code == 404
    # the change is in the bundle too: a restarted server serves it
    restarted = Engine.load(workspace, config())
    assert len(restarted.products) == 6


def test_writes_need_the_admin_token(workspace, serve, config):
    with serve(workspace, config(token=None)) as client:
        for response in (
            client.put("/products/us/9", json=SOFA),
            client.delete("/products/us/1", headers={"Authorization": "Bearer anything"}),
            client.post("/admin/reload"),
        ):
            assert response.status_code == 403
            assert "disabled: set serve.admin_token" in response.json()["error"]["message"]
    with serve(workspace) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
            response = client.put("/products/us/9", json=SOFA, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["parameter"] == "Authorization"
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert client.get("/products/us/9").status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status", "parameter"),
    [
        ("/products/fr/9", SOFA, 400, "domain"),
        ("/products/us/9", {**SOFA, "title": "  "}, 422, "title"),
        ("/products/us/9", {**SOFA, "price": -1}, 422, "price"),
        ("/products/us/9", {**SOFA, "in_stock": "perhaps"}, 422, "in_stock"),
        ("/products/us/9", {**SOFA, "attributes": ["x"]}, 422, "attributes"),
        ("/products/us/9", {**SOFA, "sku": "x"}, 422, "sku"),
        ("/products/us/9", {k: v for k, v in SOFA.items() if k != "title"}, 422, "title"),
        ("/products/us/" + "x" * 300, SOFA, 422, "product_id"),
    ],
)
def test_bad_product_writes(client, admin, path, body, status, parameter):
    response = client.put(path, json=body, headers=admin)
    assert response.status_code == status, response.text
    assert response.json()["error"]["parameter"] == parameter


@pytest.mark.parametrize(
    ("path", "parameter", "value"),
    [
        ("/products/us/%2E%2E", "product_id", ".."),
        ("/products/us/%2E", "product_id", "."),
        ("/products/us/a%00b", "product_id", "a\x00b"),
        ("/products/us/tab%09id", "product_id", "tab\tid"),
        ("/products/u%0As/9", "domain", "u\ns"),
    ],
)
def test_ids_follow_the_one_id_rule_of_ingest(client, admin, path, parameter, value):
    for method in ("PUT", "GET", "DELETE"):
        response = client.request(method, path, json=SOFA, headers=admin)
        assert response.status_code == 422, (method, response.text)
        error = response.json()["error"]
        assert error["parameter"] == parameter
        assert id_problem(value) in error["message"]
        assert repr(value) in error["message"]
    assert read_product(client.app.state.shop.workspace, "us", value) is None


def test_catalog_writes_are_refused_with_several_workers(workspace, serve, admin):
    with serve(workspace, workers=4) as client:
        response = client.put("/products/us/9", json=SOFA, headers=admin)
        assert response.status_code == 409
        assert "--workers 1" in response.json()["error"]["message"]
        assert client.get("/products/us/1").status_code == 200
