"""POST /events: durable acknowledgement, the rows training reads, and bad input → 4xx."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from shopsearch.events.compaction import compact_event_log
from shopsearch.events.stats import workspace_stats
from shopsearch.serve.request_ids import RequestIds, workspace_secret


def _search(client, **params):
    return client.get("/search", params={"q": "grey", **params}).json()


def test_served_searches_and_events_become_table_rows(client, workspace):
    found = _search(client, domain="us", user="alice", price_max=600)
    rid = found["request_id"]
    events = [
        {"request_id": rid, "product_id": "1", "kind": "click"},
        {"request_id": rid, "product_id": "1", "kind": "add_to_cart", "user_id": "bob"},
        {
            "request_id": rid,
            "product_id": "1",
            "kind": "purchase",
            "value": 499.0,
            "timestamp": "2024-05-01T12:30:00Z",
        },
    ]
    answer = client.post("/events", json={"events": events})
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 3}
    # acknowledged means on disk: compaction (another "process") sees it while the server runs
    compact_event_log(workspace)

    request = workspace.table("requests").to_pylist()
    assert len(request) == 1
    assert request[0]["request_id"] == rid
    assert (request[0]["user_id"], request[0]["domain"], request[0]["query"]) == (
        "alice", "us", "grey"
    )
    assert orjson.loads(request[0]["filters"]) == {"price_max": "600.0"}

    shown = workspace.table("impressions").to_pylist()
    assert [(r["product_id"], r["position"]) for r in shown] == [
        (i["product_id"], i["position"]) for i in found["items"]
    ]
    assert [r["price"] for r in shown] == [i["price"] for i in found["items"]]
    assert "retrieve.lexical" in orjson.loads(shown[0]["scores"])

    rows = workspace.table("interactions").to_pylist()
    assert [(r["kind"], r["user_id"], r["value"]) for r in rows] == [
        ("click", "alice", 0.0),
        ("add_to_cart", "bob", 0.0),
        ("purchase", "alice", 499.0),
    ]
    assert rows[2]["timestamp"] == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert all(r["request_id"] == rid for r in rows)
    counts = workspace_stats(workspace)["domains"]["us"]
    assert (counts["requests"], counts["clicks"], counts["carts"], counts["purchases"]) == (
        1, 1, 1, 1
    )


def test_a_search_over_all_domains_is_logged_as_star(client, workspace):
    rid = _search(client)["request_id"]
    assert client.post(
        "/events", json={"events": [{"request_id": rid, "product_id": "5", "kind": "click"}]}
    ).status_code == 200
    compact_event_log(workspace)
    request = workspace.table("requests").to_pylist()[0]
    assert (request["domain"], request["user_id"]) == ("*", "anonymous")


def test_any_worker_accepts_the_ids_of_another(workspace, serve):
    with serve(workspace) as first:
        rid = _search(first, domain="gb", user="carol")["request_id"]
    with serve(workspace) as second:
        event = {"request_id": rid, "product_id": "5", "kind": "click"}
        assert second.post("/events", json={"events": [event]}).json() == {"accepted": 1}
    compact_event_log(workspace)
    assert workspace.table("interactions")["user_id"].to_pylist() == ["carol"]
    assert workspace.table("requests")["request_id"].to_pylist() == [rid]


def _post(client, events):
    return client.post("/events", json={"events": events})


@pytest.mark.parametrize(
    ("change", "status", "parameter", "words"),
    [
        ({"request_id": "nope"}, 400, "events[1].request_id", "no search of this workspace"),
        ({"product_id": "404"}, 400, "events[1].product_id", "unknown product"),
        ({"product_id": "5"}, 400, "events[1].product_id", "domain 'us'"),
        ({"kind": "view"}, 422, "events[1].kind", "'click'"),
        ({"value": -3}, 422, "events[1].value", ">= 0"),
        ({"value": "lots"}, 422, "events[1].value", "number"),
        ({"timestamp": "yesterday"}, 422, "events[1].timestamp", "ISO-8601"),
        ({"user_id": ""}, 422, "events[1].user_id", "empty"),
        ({"colour": "red"}, 422, "events[1].colour", "not a known field"),
        ({"request_id": 7}, 422, "events[1].request_id", "string"),
    ],
)
def test_bad_events_are_refused_whole(client, workspace, change, status, parameter, words):
    rid = _search(client, domain="us")["request_id"]
    good = {"request_id": rid, "product_id": "1", "kind": "click"}
    response = _post(client, [good, {**good, **change}])
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["parameter"] == parameter
    assert words in error["message"]
    compact_event_log(workspace)
    assert workspace.count("interactions") == 0


def test_forged_and_foreign_ids_are_refused(client, workspace, tmp_path):
    rid = _search(client, domain="us", user="dave")["request_id"]
    payload, tag = rid.split(".")
    tampered = f"{payload[:-2]}AA.{tag}"
    foreign = RequestIds(b"another workspace's secret!!").issue("us", "dave")
    for bad in (tampered, foreign, rid + "x", "a.b.c", "."):
        response = _post(client, [{"request_id": bad, "product_id": "1", "kind": "click"}])
        assert response.status_code == 400, bad
    assert RequestIds(workspace_secret(workspace)).verify(rid).user_id == "dave"


@pytest.mark.parametrize(
    ("body", "parameter", "words"),
    [
        (b"{not json", "body", "JSON"),
        (b"[]", "body", "object"),
        (b'{"events": []}', "events", "at least 1"),
        (b'{"events": {}}', "events", "array"),
        (b'{"evnts": []}', "events", "required"),
    ],
)
def test_malformed_bodies(client, body, parameter, words):
    response = client.post("/events", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["parameter"] == parameter
    assert words in error["message"]


def test_too_many_events(client):
    rid = _search(client)["request_id"]
    event = {"request_id": rid, "product_id": "1", "kind": "click"}
    response = _post(client, [event] * 1001)
    assert response.status_code == 422
    assert response.json()["error"]["parameter"] == "events"
    assert "1000" in response.json()["error"]["message"]
    assert _post(client, [event] * 1000).json() == {"accepted": 1000}
