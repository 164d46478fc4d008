"""GET /search, /domains, /health: the response contract and every bad input → 4xx naming it."""

from __future__ import annotations

import re

import pytest


def test_search_response_contract(client):
    body = client.get("/search", params={"q": "grey sofa", "domain": "us"}).json()
    assert set(body) == {
        "request_id",
        "query",
        "domain",
        "total",
        "page",
        "size",
        "pages",
        "items",
        "facets",
        "timings_ms",
        "pipeline",
        "notice",
        "suggestion",
        "correction",
        "intents",
    }
    stages = [s["name"] for s in body["pipeline"]]
    assert stages == ["query", "retrieve", "relevance", "prerank", "rank", "rerank", "allocate"]
    assert {s["status"] for s in body["pipeline"]} <= {"ran", "identity", "skipped"}
    assert body["query"] == "grey sofa"
    assert body["domain"] == "us"
    assert (body["page"], body["size"]) == (1, 10)
    first = body["items"][0]
    assert first["product_id"] == "1"
    assert set(first) == {
        "domain",
        "product_id",
        "title",
        "brand",
        "category",
        "price",
        "in_stock",
        "score",
        "position",
        "stages",
    }
    assert first["category"] == ["Furniture", "Sofas"]
    assert first["stages"] == {}
    assert [i["position"] for i in body["items"]] == list(range(1, len(body["items"]) + 1))
    assert set(body["facets"]) == {"category", "brand", "price"}
    assert body["facets"]["brand"]["Acme"] == 2
    assert {"retrieve.lexical", "total"} <= set(body["timings_ms"])


def test_positions_count_over_pages_and_explain_gives_stages(client):
    page2 = client.get("/search", params={"q": "grey", "size": 2, "page": 2, "explain": 1}).json()
    assert page2["total"] == 3
    assert [i["position"] for i in page2["items"]] == [3]
    assert page2["items"][0]["stages"]["retrieve.lexical"] is not None
    assert "retrieve.fused" in page2["items"][0]["stages"]


def test_filters_and_browse(client):
    def ids(**params):
        return {i["product_id"] for i in client.get("/search", params=params).json()["items"]}

    assert ids(q="grey", domain="gb") == {"5"}
    assert ids(q="grey", price_max=300) == {"5", "6"}
    assert ids(q="grey", price_min=300, price_max=600) == {"1"}
    assert ids(category="Furniture > Sofas") == {"1", "2"}
    assert ids(q="", brand="Bolt") == {"2", "7"}
    for false in ("false", "0"):
        assert ids(q="headphones", in_stock=false) == {"3"}
    for true in ("true", "1"):
        assert ids(q="headphones", in_stock=true) == set()


def test_single_domain_workspace_resolves_the_domain(tmp_path, make_workspace, serve, config):
    from shopsearch.serve.request_ids import RequestIds, workspace_secret

    products = __import__("pandas").DataFrame(
        [("de", "1", "Graues Sofa", "Acme", "Möbel", 10.0, True)],
        columns=["domain", "product_id", "title", "brand", "category", "price", "in_stock"],
    )
    ws = make_workspace(tmp_path / "one", products)
    with serve(ws) as client:
        body = client.get("/search", params={"q": "sofa", "user": "u1"}).json()
    assert body["domain"] == "de"
    issued = RequestIds(workspace_secret(ws)).verify(body["request_id"])
    assert (issued.domain, issued.user_id) == ("de", "u1")


def test_domains_and_health(client, workspace):
    domains = client.get("/domains").json()["domains"]
    assert {d["domain_id"] for d in domains} == {"us", "gb"}
    assert set(domains[0]) == {"domain_id", "name", "language", "currency"}
    health = client.get("/health").json()
    assert health == {
        "status": "ok",
        "bundle": (workspace.root / "models" / "CURRENT").read_text().strip(),
        "products": 7,
    }


@pytest.mark.parametrize(
    ("params", "status", "parameter", "words"),
    [
        ({}, 400, "q", "empty"),
        ({"q": "   "}, 400, "q", "category or brand"),
        ({"q": "x" * 10_000}, 422, "q", "10000 characters"),
        ({"q": "sofa", "size": 0}, 422, "size", "size >= 1"),
        ({"q": "sofa", "size": 10_000}, 422, "size", "100"),
        ({"q": "sofa", "size": "ten"}, 422, "size", "whole number"),
        ({"q": "sofa", "page": 0}, 422, "page", "page >= 1"),
        ({"q": "sofa", "page": 101}, 422, "page", "100"),
        ({"q": "sofa", "domain": "fr"}, 400, "domain", "us"),
        ({"q": "sofa", "price_min": -1}, 422, "price_min", ">= 0"),
        ({"q": "sofa", "price_max": "inf"}, 422, "price_max", "finite"),
        ({"q": "sofa", "price_min": 50, "price_max": 10}, 400, "price_min", "price_max"),
        ({"q": "sofa", "in_stock": "maybe"}, 422, "in_stock", "true/false"),
        ({"q": "sofa", "explain": "lots"}, 422, "explain", "true/false"),
        ({"q": "sofa", "user": "u" * 200}, 422, "user", "128"),
        ({"q": "sofa", "user": "é" * 100}, 422, "user", "bytes"),
    ],
)
def test_bad_search_input_is_a_4xx_naming_the_parameter(client, params, status, parameter, words):
    response = client.get("/search", params=params)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["parameter"] == parameter
    assert words in error["message"]


def test_limits_come_from_settings(workspace, serve, config):
    config = config()
    config.search.max_size = 3
    with serve(workspace, config) as client:
        assert client.get("/search", params={"q": "grey", "size": 3}).status_code == 200
        error = client.get("/search", params={"q": "grey", "size": 4}).json()["error"]
    assert error["parameter"] == "size"
    assert "limit 3" in error["message"]


def test_unknown_paths_and_methods_are_json_errors(client):
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["parameter"] == "path"
    wrong = client.delete("/search")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["parameter"] == "method"


def test_a_search_without_domain_searches_one_market(workspace, serve, config):
    """Issue 13, item 4: the default search no longer lists a product once per market."""
    settings = config()
    settings.search.default_domain = None  # the shipped default
    first = workspace.domains()[0].domain_id
    with serve(workspace, settings) as client:
        body = client.get("/search", params={"q": "grey"}).json()
        every = client.get("/search", params={"q": "grey", "domain": "*"}).json()
        wrong = client.get("/search", params={"q": "grey", "domain": "fr"})
    assert body["domain"] == first
    assert {item["domain"] for item in body["items"]} == {first}
    assert every["domain"] is None
    assert {item["domain"] for item in every["items"]} == {"us", "gb"}
    assert every["total"] > body["total"]
    assert wrong.status_code == 400
    assert "or * for all" in wrong.json()["error"]["message"]


def test_no_results_is_said_and_control_characters_are_no_query(client):
    """Issue 13, item 3: nonsense matches nothing; a lone NUL is no words at all."""
    body = client.get("/search", params={"q": "qwxzzkjv"}).json()
    assert (body["total"], body["items"], body["pages"]) == (0, [], 0)
    assert body["notice"] == "no results for 'qwxzzkjv'"
    assert body["suggestion"] is None
    for nothing in ("\x00", " \t", "!!!", "\x00\x01"):
        answer = client.get("/search", params={"q": nothing})
        assert answer.status_code == 400, nothing
        assert answer.json()["error"]["parameter"] == "q"
    filtered = client.get("/search", params={"q": "sofa", "brand": "Sonic"}).json()
    assert filtered["total"] == 0
    assert filtered["suggestion"] == {"query": "sofa", "dropped": ["brand"], "total": 2}


def test_total_and_facets_do_not_depend_on_the_page(client):
    """Issue 13, items 1-2."""
    pages = [client.get("/search", params={"q": "grey", "size": 1, "page": p}).json()
             for p in (1, 2, 3, 4)]  # fmt: skip
    assert {body["total"] for body in pages} == {3}
    assert {body["pages"] for body in pages} == {3}
    assert pages[3]["items"] == []
    facets = pages[0]["facets"]
    assert sum(facets["brand"].values()) == 3
    assert sum(facets["price"].values()) == 3
    assert sum(v for k, v in facets["category"].items() if " > " not in k) == 3


def test_head_health_answers_like_get_without_a_body(client):
    got = client.get("/health")
    head = client.head("/health")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"]
    assert head.headers["content-length"] == str(len(got.content))
    assert client.head("/search", params={"q": "grey"}).status_code == 405  # searches log


def test_the_api_docs_need_no_network(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assets = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
        assert assets, page
        for url in assets:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
            answer = client.get(url)
            assert answer.status_code == 200, url
            assert answer.content, url
