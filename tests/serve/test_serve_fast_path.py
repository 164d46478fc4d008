"""GET /search through the fast path answers exactly as through FastAPI."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from fastapi import Body, FastAPI, Query
from fastapi.routing import APIRoute

from shopsearch.serve.routes_search import search_endpoint, search_router
from shopsearch.serve.search_fast_path import SearchFastPath, query_model

REQUESTS: list[str] = [
    "q=sofa",
    "q=grey&size=2&page=2",
    "q=grey&domain=us&explain=true",
    "q=grey&domain=*&in_stock=1&price_min=10&price_max=600.5",
    "q=grey&category=Furniture%20%3E%20Sofas&brand=Acme",
    "q=grey&user=u-1&correct=false",
    "q=gery",  # spelling correction
    "q=sofa&unknown=1",  # ignored by both
    "q=sofa&size=1&size=3",  # the last value wins in both
    "q=sofa&explain=yes",  # pydantic's lax booleans, in both
    "q=sofa&page=%2B2",
    "q=%20sofa%20&size=%203",
    "category=Furniture",
    # refused: by the route (400) or by the parameters' limits (422)
    "",
    "q=%20%20",
    "q=" + "x" * 10_000,
    "q=sofa&size=0",
    "q=sofa&size=10000",
    "q=sofa&size=ten",
    "q=sofa&size=",
    "q=sofa&page=0",
    "q=sofa&domain=fr",
    "q=sofa&domain=",
    "q=sofa&price_min=-1",
    "q=sofa&price_max=inf",
    "q=sofa&price_min=50&price_max=10",
    "q=sofa&in_stock=maybe",
    "q=sofa&explain=lots",
    "q=sofa&user=" + "u" * 200,
    "q=sofa&user=" + "%C3%A9" * 100,
]


def _answer(client: Any, query: str) -> tuple[int, str | None, Any]:
    response = client.get("/search?" + query)
    body = response.json()
    if response.status_code == 200:  # all but the request id and the times
        body.pop("request_id")
        body.pop("timings_ms")
        for stage in body["pipeline"]:
            stage.pop("ms")
    return response.status_code, response.headers.get("content-type"), body


def test_the_fast_path_answers_as_fastapi_does(workspace, serve, config):
    fast, slow = config(), config()
    slow.serve.search_fast_path = False
    with serve(workspace, fast) as client:
        assert any(m.cls is SearchFastPath for m in client.app.user_middleware)
        answers = [_answer(client, query) for query in REQUESTS]
        metrics = client.get("/metrics").text
    with serve(workspace, slow) as client:
        assert not any(m.cls is SearchFastPath for m in client.app.user_middleware)
        expected = [_answer(client, query) for query in REQUESTS]
    for query, got, want in zip(REQUESTS, answers, expected, strict=True):
        assert got == want, query
    assert {status for status, _, _ in answers} == {200, 400, 422}
    assert 'route="/search"' in metrics


def _scope(query: bytes, method: str = "GET", path: str = "/search", **extra: Any) -> Any:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query,
        "headers": extra.pop("headers", []),
        **extra,
    }


def test_only_well_formed_bodiless_gets_of_search_take_the_fast_path(workspace, serve, config):
    with serve(workspace, config()) as client:
        app = client.app
        state = app.state.shop
        router = search_router(state, search_endpoint(state))
        route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == "/search")
        path = SearchFastPath(app, state, route, lambda **kw: kw, app.exception_handlers)
    arguments = path._arguments(_scope(b"q=sofa&size=3&in_stock=true&price_max=9.5"))
    assert arguments is not None
    assert (arguments["q"], arguments["size"], arguments["page"]) == ("sofa", 3, 1)
    assert (arguments["in_stock"], arguments["price_max"], arguments["domain"]) == (True, 9.5, None)
    assert path._arguments(_scope(b"q=sofa&size=0")) is None  # FastAPI answers its 422
    assert path._arguments(_scope(b"q=sofa", method="HEAD")) is None
    assert path._arguments(_scope(b"q=sofa", path="/search/")) is None
    assert path._arguments(_scope(b"q=sofa", root_path="/shop")) is None
    chunked = [(b"transfer-encoding", b"chunked")]
    assert path._arguments(_scope(b"q=sofa", headers=chunked)) is None
    assert path._arguments(_scope(b"q=sofa", headers=[(b"content-length", b"5")])) is None
    assert path._arguments(_scope(b"q=sofa", headers=[(b"content-length", b"0")])) is not None


def test_a_route_that_reads_more_than_its_query_has_no_fast_path():
    app = FastAPI()

    @app.post("/echo")
    def echo(text: Annotated[str, Body()], n: Annotated[int, Query()] = 1) -> str:
        return text * n

    @app.get("/count")
    def count(n: Annotated[int, Query(ge=1)] = 1) -> int:
        return n

    routes = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
    with pytest.raises(ValueError, match="more than its query"):
        query_model(routes["/echo"])
    model = query_model(routes["/count"])
    assert model.model_validate({"n": "4"}).n == 4  # type: ignore[attr-defined]
