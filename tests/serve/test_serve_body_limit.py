"""Request bodies over ``[serve] max_body_bytes`` are refused with 413 before they are read."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from shopsearch.serve.app import create_app
from shopsearch.serve.models import MAX_EVENTS

CHUNK = 64 * 1024


def _call(app: Any, headers: list[tuple[bytes, bytes]], chunks: int) -> tuple[int, bytes, int]:
    """POST /events straight through ASGI: ``chunks`` body chunks of 64 KiB, then a client that
    stalls. Returns the status, the body and how many chunks the server took."""
    taken = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal taken
        if taken < chunks:
            taken += 1
            return {"type": "http.request", "body": b"x" * CHUNK, "more_body": True}
        await asyncio.sleep(3600)  # the rest of the body never comes
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/events",
        "raw_path": b"/events",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(asyncio.wait_for(app(scope, receive, send), timeout=5))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, taken


def test_a_declared_length_over_the_limit_is_refused_unread(workspace, config):
    settings = config()
    app = create_app(workspace, settings)
    declared = 50 * 1024 * 1024
    status, body, taken = _call(app, [(b"content-length", str(declared).encode())], 1)
    assert status == 413
    assert taken == 0  # answered from the header: not one byte of the body was read
    error = orjson.loads(body)["error"]
    assert error["parameter"] == "body"
    assert str(declared) in error["message"]
    assert str(settings.serve.max_body_bytes) in error["message"]
    assert "max_body_bytes" in error["message"]


def test_a_chunked_body_is_counted_while_it_streams(workspace, config):
    settings = config()
    settings.serve.max_body_bytes = 4 * CHUNK
    app = create_app(workspace, settings)
    status, body, taken = _call(app, [(b"transfer-encoding", b"chunked")], 800)  # 50 MiB
    assert status == 413
    assert taken == 5  # stopped at the first chunk past the limit
    error = orjson.loads(body)["error"]
    assert error["parameter"] == "body"
    assert f"limit is {4 * CHUNK} bytes" in error["message"]


def test_the_json_error_format_and_a_full_batch_still_fits(client):
    rid = client.get("/search", params={"q": "grey", "domain": "us"}).json()["request_id"]
    limit = client.app.state.shop.settings.serve.max_body_bytes
    too_big = client.post(
        "/events", content=b" " * (limit + 1), headers={"Content-Type": "application/json"}
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["parameter"] == "body"
    assert "413" in str(client.app.openapi()["paths"]["/events"]["post"]["responses"])
    # the largest batch a client can send with its ids at their limits fits the default
    event = {
        "request_id": rid,
        "product_id": "1",
        "kind": "purchase",
        "user_id": "u" * 256,
        "event_id": "e" * 256,
        "value": 1e9,
        "timestamp": "2030-01-01T00:00:00.000000+00:00",
    }
    batch = orjson.dumps({"events": [{**event, "product_id": "p" * 256}] * MAX_EVENTS})
    assert len(batch) <= limit
