"""Where a server process computes searches, and the settings of its event log."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
from fastapi.responses import Response

from shopsearch.errors import InvalidInputError
from shopsearch.serve.app import create_app
from shopsearch.serve.routes_search import on_compute_threads
from shopsearch.serve.shards import ShardPlan


def _before_each_call(monkeypatch, owner, name, note) -> None:
    """Make ``owner.name(...)`` call ``note()`` first (e.g. to record the calling thread)."""
    method = getattr(owner, name)

    def noted(*args, **kwargs):
        note()
        return method(*args, **kwargs)

    monkeypatch.setattr(owner, name, noted)


def _thread() -> str:
    return threading.current_thread().name


def test_searches_run_on_the_compute_threads_which_stop_at_shutdown(workspace, serve, monkeypatch):
    threads: list[str] = []
    with serve(workspace) as client:
        state = client.app.state.shop
        engine = state.live.current.engine
        _before_each_call(monkeypatch, engine, "search", lambda: threads.append(_thread()))
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


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize(
    ("workers", "setting", "on_loop", "fast_path"),
    [
        (2, None, True, True),
        (2, None, True, False),
        (1, None, False, True),
        (1, True, True, True),
        (2, False, False, True),
    ],
)
def test_searches_run_on_the_event_loop_by_default_with_several_workers(
    workspace, serve, config, monkeypatch, workers, setting, on_loop, fast_path
):
    settings = config()
    settings.serve.search_on_event_loop = setting
    settings.serve.search_fast_path = fast_path  # false: FastAPI's route calls the search
    where: list[tuple[bool, str]] = []
    with serve(workspace, settings, workers=workers) as client:
        engine = client.app.state.shop.live.current.engine
        _before_each_call(
            monkeypatch, engine, "search", lambda: where.append((_on_event_loop(), _thread()))
        )
        answer = client.get("/search", params={"q": "grey sofa", "domain": "us"})
        assert answer.status_code == 200
        assert answer.json()["items"]
        bad = client.get("/search", params={"q": "grey", "domain": "xx"})
        assert bad.status_code == 400  # refused before the engine, answered as before
        assert bad.json()["error"]["parameter"] == "domain"
        assert client.get("/search", params={"q": "grey", "size": "5"}).status_code == 200
    assert len(where) == 2
    for loop, thread in where:
        assert loop is on_loop
        assert thread.startswith("shopsearch-search") is not on_loop


def test_a_search_waiting_for_a_catalog_write_leaves_the_event_loop_free(
    workspace, serve, config, monkeypatch
):
    settings = config()
    settings.serve.search_on_event_loop = True
    with serve(workspace, settings) as client:
        state = client.app.state.shop
        live = state.live
        threads: list[str] = []
        _before_each_call(
            monkeypatch, live.current.engine, "search", lambda: threads.append(_thread())
        )
        handed = threading.Event()  # the search was handed to the compute threads
        _before_each_call(monkeypatch, state.compute, "submit", handed.set)
        holding, release = threading.Event(), threading.Event()

        def write() -> None:
            with live.writing():
                holding.set()
                release.wait(10)

        writer = threading.Thread(target=write)
        writer.start()
        assert holding.wait(10)
        assert live.changing()
        answers: list[int] = []
        searcher = threading.Thread(
            target=lambda: answers.append(
                client.get("/search", params={"q": "sofa", "domain": "us"}).status_code
            )
        )
        searcher.start()
        assert handed.wait(10)  # handed to a thread, where it waits for the write ...
        assert client.get("/health").status_code == 200  # ... while the loop answers
        assert searcher.is_alive()
        assert not threads  # the engine has not searched yet
        release.set()
        writer.join(10)
        searcher.join(10)
        assert not live.changing()
        assert answers == [200]
        assert threads[0].startswith("shopsearch-search")
        assert client.get("/search", params={"q": "sofa", "domain": "us"}).status_code == 200
        assert not threads[1].startswith("shopsearch-search")  # the engine is free again


def test_searching_on_the_event_loop_is_refused_with_shards(workspace, config):
    settings = config()
    settings.serve.search_on_event_loop = True
    with pytest.raises(InvalidInputError, match="--shards"):
        create_app(workspace, settings, shards=ShardPlan(None, 2, 1))
