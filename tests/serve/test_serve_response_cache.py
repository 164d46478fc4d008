"""The response cache: an anonymous search repeated is answered from memory, the same answer
under a new request id; a user's search, a recorded stream and any catalog write compute."""

from __future__ import annotations

from shopsearch.config import Settings
from shopsearch.pipeline.engine import Engine, SearchParams

from .conftest import lexical_settings


def _settings(size: int = 16) -> Settings:
    """No search drawn for stream recording (1% by default), which skips the cache."""
    settings: Settings = lexical_settings()
    settings.search.response_cache_size = size
    settings.pipeline.stream_sample = 0.0
    return settings


def _engine(workspace, size: int = 16) -> Engine:
    return Engine.load(workspace, _settings(size))


def _ids(response) -> list[str]:
    return [item.product_id for item in response.items]


def test_a_repeated_anonymous_search_is_the_same_answer_from_the_cache(workspace) -> None:
    engine = _engine(workspace)
    first = engine.search(SearchParams("grey sofa", "us"))
    again = engine.search(SearchParams("grey sofa", "us"))
    assert set(again.timings_ms) == {"cache", "total"}
    assert "retrieve" in first.timings_ms
    assert again.request_id != first.request_id
    assert (_ids(again), again.total, again.facets) == (_ids(first), first.total, first.facets)
    other = engine.search(SearchParams("grey sofa", "us", size=1))  # another page size
    assert "retrieve" in other.timings_ms
    assert engine.responses.stats().hits == 1


def test_user_searches_recorded_streams_and_a_zero_size_always_compute(workspace) -> None:
    engine = _engine(workspace)
    for _ in range(2):
        assert "retrieve" in engine.search(SearchParams("sofa", "us", user_id="u1")).timings_ms
        recorded = engine.search(SearchParams("sofa", "us", record_stream=True))
        assert "retrieve" in recorded.timings_ms
        assert recorded.stream is not None
    off = _engine(workspace, size=0)
    for _ in range(2):
        assert "retrieve" in off.search(SearchParams("sofa", "us")).timings_ms


def test_a_catalog_write_empties_the_cache(client, admin) -> None:
    def found() -> list[str]:
        answer = client.get("/search", params={"q": "chesterfield", "domain": "us"}).json()
        return [item["product_id"] for item in answer["items"]]

    assert found() == []
    assert found() == []  # now from the cache
    sofa = {"title": "Velvet chesterfield sofa", "category": "Furniture > Sofas", "price": 1299.0}
    assert client.put("/products/us/9", json=sofa, headers=admin).status_code in (200, 201)
    assert found() == ["9"]
    assert client.delete("/products/us/9", headers=admin).status_code in (200, 204)
    assert found() == []


def test_the_server_counts_response_cache_hits(serve, workspace) -> None:
    with serve(workspace, _settings()) as client:
        for _ in range(3):
            assert client.get("/search", params={"q": "grey"}).status_code == 200
        text = client.get("/metrics").text
    assert 'shopsearch_response_cache_lookups_total{result="hit",source="engine"} 2.0' in text
