"""The load generator's HTTP client: raw HTTP/1.1 over asyncio keep-alive connections.

Requests are encoded once, before timing (:func:`request_bytes`), and responses are read by
``Content-Length`` without parsing JSON (:func:`exchange`), so the client spends little CPU per
request. :func:`get` is a plain blocking GET for health checks and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Sequence
from urllib.parse import urlencode

#: The address the benchmark's server listens on and its clients connect to.
HOST = "127.0.0.1"
REQUEST_TIMEOUT_S = 30.0

#: An open keep-alive connection to the server.
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def get(port: int, path: str) -> tuple[int, bytes]:
    """``GET path`` on the server at ``port`` (one connection, closed after); status and body."""
    connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def search_paths(queries: Sequence[str], size: int) -> list[str]:
    """The ``/search`` path of each query, asking for ``size`` results."""
    return [f"/search?{urlencode({'q': q, 'size': size})}" for q in queries]


def request_bytes(port: int, paths: Sequence[str]) -> list[bytes]:
    """Each path as a complete keep-alive ``GET`` request to the server at ``port``."""
    head = f"Host: {HOST}:{port}\r\nAccept: application/json\r\n\r\n"
    return [f"GET {path} HTTP/1.1\r\n{head}".encode() for path in paths]


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bool]:
    """Send one request and read its response; returns (status, connection kept alive)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length: int | None = None
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
    if length is None:
        raise ConnectionError("the server answered without Content-Length")
    await reader.readexactly(length)
    return status, keep_alive


async def connect(port: int) -> Connection | None:
    """A connection to the server at ``port``, or ``None`` if it cannot be opened in time."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            return await asyncio.open_connection(HOST, port)
    except (OSError, TimeoutError):
        return None  # the client connects again with its first request


async def connect_all(port: int, count: int) -> list[Connection | None]:
    """``count`` connections to the server at ``port``, opened at once (see :func:`connect`)."""
    return list(await asyncio.gather(*(connect(port) for _ in range(count))))
