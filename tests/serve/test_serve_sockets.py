"""Each uvicorn worker listens on a socket of its own, so the kernel spreads connections."""

from __future__ import annotations

import socket

import pytest

from shopsearch.bench.server import listening_sockets
from shopsearch.errors import InvalidInputError
from shopsearch.serve.runner import listening_socket, reserved_port

HOST = "127.0.0.1"


def test_connections_opened_together_reach_every_worker_socket() -> None:
    with reserved_port(HOST, 0) as port:
        workers = [listening_socket(HOST, port) for _ in range(2)]
        clients: list[socket.socket] = []
        try:
            for sock in workers:
                sock.listen(64)
                sock.setblocking(False)
            clients = [socket.create_connection((HOST, port), timeout=10) for _ in range(32)]
            accepted = [0, 0]
            for i, sock in enumerate(workers):
                while True:
                    try:
                        conn, _ = sock.accept()
                    except BlockingIOError:
                        break
                    conn.close()
                    accepted[i] += 1
            # One shared socket lets the first worker to wake take all 32; with a socket each,
            # the kernel hashes connections over both (all on one: probability 2 / 2**32).
            assert sum(accepted) == 32
            assert min(accepted) > 0
        finally:
            for sock in [*workers, *clients]:
                sock.close()


def test_the_reserved_port_takes_no_connections_itself() -> None:
    with reserved_port(HOST, 0) as port, pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=10)


def test_a_port_in_use_is_refused_clearly() -> None:
    with socket.socket() as other:
        other.bind((HOST, 0))
        other.listen(1)
        port = other.getsockname()[1]
        refused = pytest.raises(InvalidInputError, match=f"cannot listen on {HOST}:{port}")
        with refused, reserved_port(HOST, port):
            pass


def test_the_benchmark_counts_the_sockets_listening_on_a_port() -> None:
    with reserved_port(HOST, 0) as port:
        assert listening_sockets(port) == 0  # bound, not listening
        workers = [listening_socket(HOST, port) for _ in range(2)]
        try:
            workers[0].listen(8)
            assert listening_sockets(port) == 1
            workers[1].listen(8)
            assert listening_sockets(port) == 2
        finally:
            for sock in workers:
                sock.close()


def test_a_worker_that_cannot_listen_stops_the_supervisor_instead_of_restarting() -> None:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from shopsearch.serve.runner import OwnSocketWorker

    with socket.socket() as other:  # a program without SO_REUSEPORT holds the port
        other.bind((HOST, 0))
        other.listen(1)
        config = uvicorn.Config("shopsearch.serve.app:app_from_env", host=HOST,
                                port=other.getsockname()[1], factory=True)  # fmt: skip
        worker = OwnSocketWorker(config, [])
        with pytest.raises(SystemExit) as stopped:
            worker.target()
        assert stopped.value.code == STARTUP_FAILURE
