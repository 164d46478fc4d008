"""``shopsearch serve --server``: uvicorn and granian run the same app the same way.

Each server runs ``shopsearch serve`` in a subprocess on 127.0.0.1 with two workers: searches
and posted events are answered, ``/metrics`` sums the workers' counts (the Prometheus
multiprocess folder), an answer one worker computed is a cache hit on the other (shared
answers), and a graceful stop (SIGTERM) flushes and compacts the event log into the tables, so
an acknowledged event is stored and the run's folders are removed.
"""

from __future__ import annotations

import http.client
import time

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shopsearch.bench.http_client import HOST, get
from shopsearch.bench.server import running_server
from shopsearch.cli import run
from shopsearch.events.log import LOG_DIR
from shopsearch.serve.engines import SIGNAL_DIR


def _post(port: int, path: str, body: object) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("POST", path, orjson.dumps(body), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _searches_counted(port: int) -> float:
    status, body = get(port, "/metrics")
    assert status == 200
    return sum(
        sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        if sample.name == "shopsearch_http_requests_total"
        and sample.labels.get("route") == "/search"
    )


@pytest.mark.parametrize("server", ["uvicorn", "granian"])
def test_two_workers_serve_count_and_compact_at_shutdown(workspace, tmp_path, server):
    no_streams = {"SHOPSEARCH_PIPELINE__STREAM_SAMPLE": "0"}  # a recorded search skips caches
    with running_server(workspace.root, 2, tmp_path / "server.log", no_streams, server) as port:
        ids = []
        for query in ("grey sofa", "leather couch", "running shoes"):
            status, body = get(port, f"/search?q={query.replace(' ', '+')}&domain=us")
            assert status == 200
            ids.append(orjson.loads(body)["request_id"])
        event = {"request_id": ids[0], "product_id": "1", "kind": "click"}
        for _ in range(3):  # 409: the other worker has not logged the search yet (a loaded
            status, body = _post(port, "/events", {"events": [event]})  # machine); retry
            if status != 409:
                break
        assert status == 200, body
        assert _searches_counted(port) == 3
        # the worker that answers a search first shares the answer: a cache hit on either
        journals = workspace.root / SIGNAL_DIR
        deadline = time.monotonic() + 30  # both workers reading the other's from here on
        while len(list(journals.glob("answers-*/*.answers"))) < 2 < deadline - time.monotonic():
            time.sleep(0.1)
        assert len(list(journals.glob("answers-*/*.answers"))) == 2
        timings = []
        for n in range(7):  # new connections, spread over both workers
            status, body = get(port, "/search?q=leather+sofa&domain=us")
            assert status == 200
            ids.append(orjson.loads(body)["request_id"])
            timings.append(sorted(orjson.loads(body)["timings_ms"]))
            if n == 0:
                time.sleep(1.5)  # the other worker reads the journals every 0.1 s
        assert "retrieve" in timings[0]
        assert timings[1:] == [["cache", "total"]] * 6
    assert not list((workspace.root / LOG_DIR).glob("*.wal"))  # compacted at shutdown
    assert sorted(workspace.table("requests")["request_id"].to_pylist()) == sorted(ids)
    assert workspace.table("interactions")["request_id"].to_pylist() == [ids[0]]
    assert not list((workspace.root / SIGNAL_DIR).glob("metrics-*"))
    assert not list((workspace.root / SIGNAL_DIR).glob("answers-*"))


def test_an_unknown_server_is_refused(workspace, capsys):
    assert run(["serve", "-w", str(workspace.root), "--server", "gunicorn"]) == 2
    assert "gunicorn" in capsys.readouterr().err
