"""Where a server process computes searches, and the settings of its event log."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from fastapi.responses import Response

from shopsearch.serve.app import create_app
from shopsearch.serve.routes_search import on_compute_threads


def test_searches_run_on_the_compute_threads_which_stop_at_shutdown(workspace, serve, monkeypatch):
    threads: list[str] = []
    with serve(workspace) as client:
        state = client.app.state.shop
        engine = state.live.current.engine
        search = engine.search

        def recorded(*args, **kwargs):
            threads.append(threading.current_thread().name)
            return search(*args, **kwargs)

        monkeypatch.setattr(engine, "search", recorded)
        answer = client.get("/search", params={"q": "grey sofa", "domain": "us"})
        assert answer.status_code == 200
        assert answer.json()["items"]
        assert client.get("/search", params={"q": "grey", "size": 0}).status_code == 422
        bad = client.get("/search", params={"q": "grey", "domain": "xx"})
        assert bad.status_code == 400  # raised on a compute thread, answered as before
        assert bad.json()["error"] == {
            "parameter": "domain",
            "message": "unknown domain 'xx'; domains are gb, us (see /domains), or * for all",
        }
    assert len(threads) == 1  # the 422 and the 400 were answered before the engine ran
    assert threads[0].startswith("shopsearch-search")
    with pytest.raises(RuntimeError):  # shut down with the app
        state.compute.submit(print)


def test_the_log_linger_comes_from_the_settings(workspace, config):
    settings = config()
    settings.serve.log_linger_s = 0.2
    assert create_app(workspace, settings).state.shop.log.linger_s == 0.2


def test_the_hop_to_the_compute_threads_keeps_the_context(workspace, config):
    state = create_app(workspace, config()).state.shop
    seen = contextvars.ContextVar("seen", default="unset")
    endpoint = on_compute_threads(
        state, lambda: Response(f"{seen.get()} {threading.current_thread().name}")
    )

    async def call() -> Response:
        seen.set("request")
        return await endpoint()

    try:
        answer = bytes(asyncio.run(call()).body).decode()
    finally:
        state.close()
    assert answer.startswith("request shopsearch-search")
