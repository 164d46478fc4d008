"""The server under test: ``shopsearch serve`` as a subprocess on a snapshot of the workspace.

:func:`server_process` starts the server on 127.0.0.1 and a free port in a process group of its
own, waits for ``/health`` and always stops it (and any worker that outlives it);
:func:`snapshot_workspace` makes the hard-linked copy of the workspace it serves, so benchmark
searches are logged there and never reach the workspace's own logs.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson

from shopsearch.bench.http_client import HOST, get
from shopsearch.config import HttpServer, ServeSettings
from shopsearch.errors import ShopSearchError
from shopsearch.events.log import LOG_DIR
from shopsearch.serve.engines import SIGNAL_DIR
from shopsearch.serve.request_ids import SECRET_FILE
from shopsearch.store.bundles import CURRENT_FILE, current_bundle
from shopsearch.store.workspace import Workspace

STARTUP_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 15.0
# Workspace folders and files a server does not read (its log, secret and signals are made anew).
_NOT_SERVED = frozenset({LOG_DIR, SECRET_FILE, SIGNAL_DIR, "cache", "ground_truth", "rejects"})
# Run the CLI through this interpreter: works whether or not the venv's bin/ is on PATH.
_SERVE = "from shopsearch.cli import main; main()"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(log: Path, lines: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def listening_sockets(port: int) -> int | None:
    """How many sockets listen on TCP ``port`` here (``None``: no ``/proc/net/tcp`` to tell)."""
    count, readable = 0, False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1  # state 0A: LISTEN
            readable = True
    return count if readable else None


def _wait_healthy(
    process: subprocess.Popen[bytes], port: int, log: Path, listeners: int = 1
) -> None:
    """Wait until the server answers ``/health`` and ``listeners`` sockets listen on ``port``.

    A uvicorn worker listens on a socket of its own once its engine is loaded
    (:func:`shopsearch.serve.runner.listening_socket`); ``/health`` answers as soon as the
    first one does. Load started then lands every keep-alive connection on the workers ready
    so far, for the whole level (measured: one worker of two doing 98% of the work, the p99
    of 300 req/s in seconds), so a benchmark waits for all of them.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    healthy = False
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ShopSearchError(
                f"the server exited with status {process.returncode} before answering /health; "
                f"its last output:\n{_tail(log)}"
            )
        if not healthy:
            with contextlib.suppress(OSError, http.client.HTTPException):
                healthy = get(port, "/health")[0] == 200
        if healthy:
            listening = listening_sockets(port) if listeners > 1 else None
            if listening is None or listening >= listeners:
                return  # (without /proc there is no telling: the first answer has to do)
        time.sleep(0.2)
    raise ShopSearchError(
        f"the server did not answer /health with {listeners} worker(s) listening within "
        f"{STARTUP_TIMEOUT_S:.0f} s; its last output:\n{_tail(log)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # uvicorn and granian shut their workers down on SIGTERM
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
    # The server got its own process group: end any worker that outlived it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def running_server(
    workspace: Path,
    workers: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    server: HttpServer | None = None,
) -> Iterator[int]:
    """Run ``shopsearch serve`` on 127.0.0.1 until the block ends; yields its port.

    Args:
        workspace: the workspace to serve (it must have a current bundle).
        workers: server worker processes.
        log: file receiving the server's output (its tail is shown if it fails to start).
        env: extra environment variables of the server (settings overrides).
        server: the HTTP server (``serve --server``; ``None``: the workspace's
            ``serve.server``).
    """
    with server_process(workspace, workers, log, env, server) as (port, _):
        yield port


@contextlib.contextmanager
def server_process(
    workspace: Path,
    workers: int,
    log: Path,
    env: Mapping[str, str] | None = None,
    server: HttpServer | None = None,
) -> Iterator[tuple[int, int]]:
    """:func:`running_server`, yielding its port and the server's process id."""
    port = _free_port()
    command = [
        sys.executable,
        "-c",
        _SERVE,
        "serve",
        "--workspace",
        str(workspace),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        *(() if server is None else ("--server", server)),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        try:
            own_sockets = (server or ServeSettings().server) == "uvicorn" and workers > 1
            _wait_healthy(process, port, log, workers if own_sockets else 1)
            yield port, process.pid
        finally:
            _stop(process)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def snapshot_workspace(workspace: Workspace, into: Path) -> Path:
    """A copy of what serving reads (tables, the current bundle, settings), made of hard links.

    The benchmark serves the snapshot, so its searches are logged there, at the same cost, and
    never reach the workspace's own logs (they would become training data). Hard links are safe
    because every workspace write replaces files by rename and never changes one in place; where
    linking fails (another file system) the file is copied.
    """
    root, models = workspace.root.resolve(), workspace.root.resolve() / "models"
    bundle = current_bundle(workspace)

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        if here == root:
            return {n for n in names if n in _NOT_SERVED or n.startswith(".")}
        if here == models:
            return {n for n in names if n not in (CURRENT_FILE, bundle.name)}
        return set()

    shutil.copytree(root, into, ignore=ignore, copy_function=_link_or_copy)
    return into


def check_search(port: int, path: str, log: Path) -> None:
    """Fail clearly unless ``GET path`` answers 200 with a JSON object holding ``items``."""
    status, body = get(port, path)
    answer = orjson.loads(body) if body.startswith(b"{") else None
    if status != 200 or not isinstance(answer, dict) or "items" not in answer:
        raise ShopSearchError(
            f"GET {path} answered {status} {body[:300]!r}; expected 200 with a JSON body "
            f"holding 'items'; the server's last output:\n{_tail(log)}"
        )
