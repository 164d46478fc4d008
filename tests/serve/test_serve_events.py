"""POST /events: durable acknowledgement, the rows training reads, and bad input → 4xx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pandas as pd
import pytest

from shopsearch.events.compaction import compact_event_log
from shopsearch.events.stats import workspace_stats
from shopsearch.serve.request_ids import RequestIds, workspace_secret


def _search(client, **params):
    return client.get("/search", params={"q": "grey", **params}).json()


def _post(client, events):
    return client.post("/events", json={"events": events})


def test_served_searches_and_events_become_table_rows(client, workspace):
    found = _search(client, domain="us", user="alice", price_max=600)
    rid = found["request_id"]
    paid = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    events = [
        {"request_id": rid, "product_id": "1", "kind": "click"},
        {"request_id": rid, "product_id": "1", "kind": "add_to_cart", "user_id": "bob"},
        {
            "request_id": rid,
            "product_id": "1",
            "kind": "purchase",
            "value": 499.0,
            "timestamp": paid.isoformat(),
        },
    ]
    answer = client.post("/events", json={"events": events})
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 3, "duplicates": 0}
    # acknowledged means on disk: compaction (another "process") sees it while the server runs
    compact_event_log(workspace)

    request = workspace.table("requests").to_pylist()
    assert len(request) == 1
    assert request[0]["request_id"] == rid
    assert (request[0]["user_id"], request[0]["domain"], request[0]["query"]) == (
        "alice",
        "us",
        "grey",
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
    assert rows[2]["timestamp"] == paid
    assert all(r["request_id"] == rid for r in rows)
    counts = workspace_stats(workspace)["domains"]["us"]
    assert (counts["requests"], counts["clicks"], counts["carts"], counts["purchases"]) == (
        1,
        1,
        1,
        1,
    )


def test_a_click_from_an_all_markets_search_is_stored_under_the_products_market(client, workspace):
    found = _search(client)
    assert {i["domain"] for i in found["items"]} == {"us", "gb"}
    rid = found["request_id"]
    answer = _post(client, [{"request_id": rid, "product_id": "5", "kind": "click"}])
    assert answer.status_code == 200, answer.text
    compact_event_log(workspace)
    with workspace.connect() as con:
        clicked = con.execute(
            "SELECT r.domain, r.user_id, x.product_id FROM interactions x "
            "JOIN requests r USING (request_id)"
        ).fetchall()
        shown = con.execute(
            "SELECT r.domain, i.product_id FROM impressions i JOIN requests r USING (request_id) "
            "ORDER BY i.position"
        ).fetchall()
        products = con.execute(
            "SELECT count(*) FROM impressions i JOIN requests r USING (request_id) "
            "JOIN products p ON p.domain = r.domain AND p.product_id = i.product_id"
        ).fetchone()
    assert clicked == [("gb", "anonymous", "5")]
    assert shown == [(i["domain"], i["product_id"]) for i in found["items"]]
    assert products == (len(found["items"]),)  # every impression joins its market's product
    counts = workspace_stats(workspace)["domains"]
    assert "*" not in counts
    assert (counts["gb"]["clicks"], counts["us"]["clicks"]) == (1, 0)


def test_any_worker_accepts_the_ids_of_another(workspace, serve):
    with serve(workspace) as first:
        rid = _search(first, domain="gb", user="carol")["request_id"]
    with serve(workspace) as second:
        event = {"request_id": rid, "product_id": "5", "kind": "click"}
        assert second.post("/events", json={"events": [event]}).json() == {
            "accepted": 1,
            "duplicates": 0,
        }
    compact_event_log(workspace)
    assert workspace.table("interactions")["user_id"].to_pylist() == ["carol"]
    assert workspace.table("requests")["request_id"].to_pylist() == [rid]


@pytest.mark.parametrize(
    ("change", "status", "parameter", "words"),
    [
        ({"request_id": "nope"}, 400, "events[1].request_id", "no search of this workspace"),
        ({"product_id": "404"}, 400, "events[1].product_id", "'404' was not shown"),
        ({"product_id": "5"}, 400, "events[1].product_id", "'5' was not shown"),
        ({"product_id": "1", "domain": "gb"}, 400, "events[1].product_id", "in market 'gb'"),
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
    assert _post(client, [event] * 1000).json() == {"accepted": 1000, "duplicates": 999}


def test_repeated_events_are_stored_once(client, workspace):
    rid = _search(client, domain="us")["request_id"]
    click = {"request_id": rid, "product_id": "1", "kind": "click"}
    assert _post(client, [click] * 1000).json() == {"accepted": 1000, "duplicates": 999}
    assert _post(client, [click]).json() == {"accepted": 1, "duplicates": 1}
    bought = {"request_id": rid, "product_id": "1", "kind": "purchase"}
    answer = _post(client, [{**bought, "value": 499.0}, {**bought, "value": 39.0}])
    assert answer.json() == {"accepted": 2, "duplicates": 0}  # two amounts: two purchases
    compact_event_log(workspace)
    rows = workspace.table("interactions").to_pylist()
    assert sorted((r["kind"], r["value"]) for r in rows) == [
        ("click", 0.0),
        ("purchase", 39.0),
        ("purchase", 499.0),
    ]


def test_an_event_id_is_an_idempotency_key(client, workspace):
    rid = _search(client, domain="us")["request_id"]
    bought = {"request_id": rid, "product_id": "1", "kind": "purchase", "value": 499.0}
    first = _post(client, [{**bought, "event_id": "order-1"}, {**bought, "event_id": "order-2"}])
    assert first.json() == {"accepted": 2, "duplicates": 0}  # same fields, two ids: two events
    assert _post(client, [{**bought, "event_id": "order-2"}]).json() == {
        "accepted": 1,
        "duplicates": 1,
    }
    reused = _post(client, [{**bought, "event_id": "order-1", "value": 5.0}])
    assert reused.status_code == 409, reused.text
    error = reused.json()["error"]
    assert error["parameter"] == "events[0].event_id"
    assert "'order-1'" in error["message"]
    assert "new event_id" in error["message"]
    compact_event_log(workspace)
    assert workspace.table("interactions")["value"].to_pylist() == [499.0, 499.0]


def test_a_repeat_sent_to_another_worker_is_not_stored_twice(workspace, serve):
    with serve(workspace) as first, serve(workspace) as second:
        rid = _search(first, domain="us")["request_id"]
        click = {"request_id": rid, "product_id": "1", "kind": "click"}
        # the other worker finds the search in the first one's log, even right after it
        assert _post(second, [click]).json() == {"accepted": 1, "duplicates": 0}
        assert _post(first, [click]).json() == {"accepted": 1, "duplicates": 1}
    with serve(workspace) as restarted:  # after a restart, from the tables
        assert _post(restarted, [click]).json() == {"accepted": 1, "duplicates": 1}
    compact_event_log(workspace)
    assert workspace.count("interactions") == 1


def test_an_event_on_a_product_the_search_did_not_show_is_refused(client, workspace):
    found = _search(client, domain="us", size=1)
    rid, shown = found["request_id"], found["items"][0]["product_id"]
    hidden = "6" if shown == "1" else "1"  # in the catalog, in the market, not shown
    response = _post(client, [{"request_id": rid, "product_id": hidden, "kind": "click"}])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["parameter"] == "events[0].product_id"
    assert f"product {hidden!r} was not shown" in error["message"]
    assert repr(shown) in error["message"]
    compact_event_log(workspace)
    assert workspace.count("interactions") == 0


@pytest.mark.parametrize(
    ("timestamp", "words"),
    [
        ("0001-01-01T00:00:00Z", "before the search"),
        ("2999-01-01T00:00:00Z", "in the future"),
    ],
)
def test_event_times_outside_the_window_are_refused(client, workspace, timestamp, words):
    rid = _search(client, domain="us")["request_id"]
    event = {"request_id": rid, "product_id": "1", "kind": "click", "timestamp": timestamp}
    response = _post(client, [event])
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["parameter"] == "events[0].timestamp"
    assert timestamp[:4] in error["message"]
    assert words in error["message"]
    assert "event_time_tolerance_s" in error["message"]
    compact_event_log(workspace)
    assert workspace.count("interactions") == 0


def test_a_product_shown_in_two_markets_is_stored_under_the_market_named(
    tmp_path, make_workspace, serve
):
    products = pd.DataFrame(
        [
            ("us", "1", "Grey sofa", "Acme", "Sofas", 499.0, True),
            ("gb", "1", "Grey sofa", "Acme", "Sofas", 399.0, True),
        ],
        columns=["domain", "product_id", "title", "brand", "category", "price", "in_stock"],
    )
    workspace = make_workspace(tmp_path / "ws", products)
    with serve(workspace) as client:
        found = _search(client)
        assert sorted(i["domain"] for i in found["items"]) == ["gb", "us"]
        click = {"request_id": found["request_id"], "product_id": "1", "kind": "click"}
        ambiguous = _post(client, [click])
        assert ambiguous.status_code == 400
        assert ambiguous.json()["error"]["parameter"] == "events[0].domain"
        message = ambiguous.json()["error"]["message"]
        assert "shown in markets" in message
        assert "'gb'" not in message  # markets are listed plainly
        assert {"gb", "us"} <= set(message.replace(",", " ").split())
        assert _post(client, [{**click, "domain": "gb"}]).status_code == 200
    with workspace.connect() as con:
        clicked = con.execute(
            "SELECT r.domain, p.price FROM interactions x JOIN requests r USING (request_id) "
            "JOIN products p ON p.domain = r.domain AND p.product_id = x.product_id"
        ).fetchall()
    assert clicked == [("gb", 399.0)]


def test_an_event_of_a_search_missing_from_the_log_is_a_409(client, workspace):
    unlogged = RequestIds(workspace_secret(workspace)).issue("us", "erin")  # signed, never served
    response = _post(client, [{"request_id": unlogged, "product_id": "1", "kind": "click"}])
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["parameter"] == "events[0].request_id"
    assert "not in the event log" in error["message"]
