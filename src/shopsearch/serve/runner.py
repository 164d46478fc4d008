"""Running the app under uvicorn or granian for ``shopsearch serve`` and ``shopsearch demo``.

Both run the factory :func:`shopsearch.serve.app.app_from_env` in each worker process with its
lifespan (the event log starts at start-up, and is flushed and compacted at shutdown), stop
gracefully on SIGTERM or Ctrl-C, and see the same environment (the workspace, the compute
thread limits and, with several workers, ``PROMETHEUS_MULTIPROC_DIR``), set before workers
start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import multiprocess

from shopsearch.config import HttpServer, ServeSettings
from shopsearch.errors import InvalidInputError
from shopsearch.serve.app import (
    ENV_CONFIG,
    ENV_RUN,
    ENV_SHARDS,
    ENV_WORKERS,
    ENV_WORKSPACE,
    shard_plan_from_env,
)
from shopsearch.serve.engines import SIGNAL_DIR
from shopsearch.serve.shared_answers import journal_folder
from shopsearch.serve.threads import thread_env
from shopsearch.store.bundles import current_bundle
from shopsearch.store.workspace import Workspace

_APP = "shopsearch.serve.app:app_from_env"
#: Seconds uvicorn waits for open requests at shutdown (the lifespan's shutdown is not timed).
GRACEFUL_SHUTDOWN_S = 10


def serve_workspace(
    workspace: Workspace,
    *,
    host: str,
    port: int,
    workers: int = 1,
    config: Path | None = None,
    compute_threads: int = 1,
    shards: str | None = None,
    server: HttpServer | None = None,
) -> None:
    """Serve ``workspace`` until interrupted (Ctrl-C shuts down cleanly, compacting the log).

    Args:
        workspace: the workspace to serve; it needs a bundle (``shopsearch index``).
        host: address to listen on.
        port: TCP port.
        workers: worker processes (more than 1: no catalog writes; see
            :mod:`shopsearch.serve.catalog`).
        config: the TOML settings file, if not the workspace's own.
        compute_threads: threads of each worker's compute libraries (``serve.compute_threads``;
            0: library defaults); set in the environment before the workers start.
        shards: ``address,shards,replicas`` to serve the lexical source from shard actors on
            Ray (address ``local``: start one here); needs ``workers`` 1.
        server: the HTTP server, ``uvicorn`` or ``granian`` (``None``: ``serve.server``'s
            default).

    Raises:
        WorkspaceError: the workspace has no bundle yet.
    """
    current_bundle(workspace)  # fail before starting when there is nothing to serve
    if shards is not None:
        if workers != 1:
            raise InvalidInputError(
                f"--shards serves from one front process; got workers={workers}: use "
                "--workers 1 and raise --replicas for more shard throughput"
            )
        shard_plan_from_env(shards)  # a clear error before starting
        os.environ[ENV_SHARDS] = shards
    run = uuid.uuid4().hex
    os.environ[ENV_WORKSPACE] = str(workspace.root.resolve())
    os.environ[ENV_WORKERS] = str(workers)
    os.environ[ENV_RUN] = run
    os.environ.update(thread_env(compute_threads))
    if config is not None:
        os.environ[ENV_CONFIG] = str(config.resolve())
    run_dir = workspace.root / SIGNAL_DIR
    metrics_dir = run_dir / f"metrics-{run}"
    if workers > 1:
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    try:
        if (server or ServeSettings().server) == "granian":
            _run_granian(host, port, workers)
        else:
            _run_uvicorn(host, port, workers)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(journal_folder(run_dir, run), ignore_errors=True)
        (run_dir / f"reload-{run}.json").unlink(missing_ok=True)


def _run_uvicorn(host: str, port: int, workers: int) -> None:
    options: dict[str, Any] = {
        "factory": True,
        "host": host,
        "port": port,
        "workers": workers,
        "access_log": False,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }
    if workers == 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(_APP, **options)
        return
    with reserved_port(host, port) as bound:
        config = uvicorn.Config(_APP, **{**options, "port": bound})  # also sets up logging
        logging.getLogger("uvicorn.error").info(
            "Uvicorn running on http://%s:%d, %d workers, a socket each (Press CTRL+C to quit)",
            host, bound, workers,
        )  # fmt: skip
        # uvicorn's supervisor makes (and remakes) its workers by this module-level name
        multiprocess.Process = OwnSocketWorker  # type: ignore[misc]
        multiprocess.Multiprocess(config, sockets=[]).run()


@contextlib.contextmanager
def reserved_port(host: str, port: int) -> Iterator[int]:
    """Bind ``host:port`` for SO_REUSEPORT sockets without listening on it, while the block
    runs; yields the port (the one chosen for port 0).

    Workers' own sockets (:func:`listening_socket`) join it; it takes no connections itself
    (only listening sockets do), and keeps the port from other programs between restarts.
    """
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        raise InvalidInputError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    with sock:
        yield int(sock.getsockname()[1])


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket of one worker's own on ``host:port`` (SO_REUSEPORT), bound, not yet listening.

    With several uvicorn workers sharing one socket, the first to wake takes every waiting
    connection, and a keep-alive connection never moves: the 32 connections of a load test
    opened together could all land on one worker, which then queued at full load while the
    other idled (measured: 98% of the CPU on one worker, p99 in seconds). With a socket each,
    the kernel spreads new connections over the workers by their addresses.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class OwnSocketWorker(multiprocess.Process):
    """A uvicorn worker process that listens on a socket of its own (:func:`listening_socket`)
    instead of the supervisor's shared one; health checks, restarts and signals stay uvicorn's."""

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve on a new socket bound to the configured address (``sockets`` is empty)."""
        try:
            own = listening_socket(self.config.host, self.config.port)
        except OSError as exc:  # the supervisor stops instead of restarting the worker
            logging.getLogger("uvicorn.error").error("worker cannot listen: %s", exc)
            sys.exit(STARTUP_FAILURE)
        super().target([own])


def _run_granian(host: str, port: int, workers: int) -> None:
    import multiprocessing

    from granian.constants import Interfaces
    from granian.server import Server as Granian

    # Granian starts workers with this process's start method. Forked workers would inherit
    # the modules imported here (prometheus_client, loaded before PROMETHEUS_MULTIPROC_DIR was
    # set, would keep each worker's metrics in memory, so /metrics would not sum them; compute
    # libraries would keep this process's thread settings): spawn them fresh, as uvicorn does.
    multiprocessing.set_start_method("spawn", force=True)
    Granian(
        _APP,
        address=host,
        port=port,
        interface=Interfaces.ASGI,  # with the lifespan protocol
        workers=workers,
        factory=True,
        log_access=False,  # no kill timeout: a worker's shutdown compacts the log, untimed
    ).serve()
