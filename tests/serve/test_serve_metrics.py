"""GET /metrics, and the 503 of /events when the log cannot be written."""

from __future__ import annotations

import re


def _value(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{series} not in metrics"
    return float(match.group(1))


def test_metrics_count_routes_statuses_stages_and_the_log(client):
    rid = client.get("/search", params={"q": "grey", "domain": "us"}).json()["request_id"]
    client.get("/search", params={"q": "grey", "size": 0})
    client.get("/products/us/404")
    event = {"request_id": rid, "product_id": "1", "kind": "click"}
    client.post("/events", json={"events": [event, event]})
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    requests = "shopsearch_http_requests_total"
    assert _value(text, f'{requests}{{method="GET",route="/search",status="200"}}') == 1
    assert _value(text, f'{requests}{{method="GET",route="/search",status="422"}}') == 1
    route = "/products/{domain}/{product_id}"
    assert _value(text, f'{requests}{{method="GET",route="{route}",status="404"}}') == 1
    assert _value(text, 'shopsearch_http_errors_total{kind="client",route="/search"}') == 1
    assert _value(text, 'shopsearch_http_request_duration_seconds_count{route="/search"}') == 2
    stage = "shopsearch_search_stage_duration_seconds_count"
    for name in ("retrieve.lexical", "retrieve.fusion", "render", "total"):
        assert _value(text, f'{stage}{{stage="{name}"}}') == 1
    assert _value(text, "shopsearch_event_log_lines_total") == 2  # a search, an event twice
    client.head("/health")
    health = f'{requests}{{method="HEAD",route="/health",status="200"}}'
    assert _value(client.get("/metrics").text, health) == 1


def test_events_answer_503_when_the_log_cannot_be_written(client, workspace, monkeypatch):
    rid = client.get("/search", params={"q": "grey"}).json()["request_id"]
    log = client.app.state.shop.log

    async def broken(data: bytes, lines: int = 1) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "write", broken)
    response = client.post(
        "/events", json={"events": [{"request_id": rid, "product_id": "1", "kind": "click"}]}
    )
    assert response.status_code == 503
    assert "nothing was stored" in response.json()["error"]["message"]
