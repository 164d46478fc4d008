"""A real ``shopsearch serve`` killed with SIGKILL while events stream in loses no acknowledged
event and leaves every table readable; a restarted server compacts its own log at shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from shopsearch.events.compaction import compact_event_log
from shopsearch.store.workspace import Workspace

HOST = "127.0.0.1"
_CLI = "from shopsearch.cli import main; main()"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(ws: Workspace, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = _free_port()
    command = [
        sys.executable,
        "-c",
        _CLI,
        "serve",
        "-w",
        str(ws.root),
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    env = {**os.environ, "SHOPSEARCH_SERVE__ADMIN_TOKEN": "t"}
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _post_until_dead(url: str, rid: str, acked: list[float], stop: threading.Event) -> None:
    with httpx.Client(timeout=5) as http:
        for batch in range(5_000):
            if stop.is_set():
                return
            values = [float(batch * 10 + j) for j in range(5)]
            events = [
                {"request_id": rid, "product_id": "1", "kind": "purchase", "value": v}
                for v in values
            ]
            try:
                response = http.post(f"{url}/events", json={"events": events})
            except httpx.TransportError:
                return
            if response.status_code == 200:
                acked.extend(values)


def _check_readable(ws: Workspace) -> None:
    for table in ("products", "requests", "impressions", "interactions"):
        for part in ws.parts(table):
            pq.read_table(part)


@pytest.mark.slow
def test_sigkill_mid_stream_loses_no_acknowledged_event(workspace, tmp_path):
    log = tmp_path / "server.log"
    acked: list[float] = []
    stop = threading.Event()
    with _server(workspace, log) as (process, url):
        rid = httpx.get(f"{url}/search", params={"q": "sofa", "domain": "us"}).json()["request_id"]
        poster = threading.Thread(target=_post_until_dead, args=(url, rid, acked, stop))
        poster.start()
        deadline = time.monotonic() + 30
        while len(acked) < 200 and time.monotonic() < deadline and poster.is_alive():
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        stop.set()
        poster.join(timeout=30)
    assert len(acked) >= 200

    compact_event_log(workspace)  # what the next command reading events does
    _check_readable(workspace)
    stored = workspace.table("interactions")["value"].to_pylist()
    assert len(stored) == len(set(stored))  # nothing twice
    assert set(acked) <= set(stored)  # nothing acknowledged is lost
    assert workspace.table("requests")["request_id"].to_pylist() == [rid]

    # a new server on the same workspace serves, and compacts its own log when stopped
    with _server(workspace, log) as (process, url):
        search = {"q": "couch", "user": "u9", "domain": "us"}
        rid = httpx.get(f"{url}/search", params=search).json()["request_id"]
        event = {"request_id": rid, "product_id": "2", "kind": "click"}
        assert httpx.post(f"{url}/events", json={"events": [event]}).status_code == 200
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    users = workspace.table("interactions")["user_id"].to_pylist()
    assert users.count("u9") == 1
    assert not list((workspace.root / "log").glob("*.wal"))
    _check_readable(workspace)
