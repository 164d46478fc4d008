"""ASGI middleware for the framing of requests: the body size limit and ``HEAD /health``."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopsearch.serve.errors import error_response


class BodyTooLargeError(HTTPException):
    """A request body went over the limit while it was read (answered 413)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


def _too_large(size: str, limit: int) -> str:
    return (
        f"the body is {size}; the limit is {limit} bytes ([serve] max_body_bytes); send a "
        "smaller body (e.g. fewer events per POST /events), or raise max_body_bytes"
    )


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413 before they are parsed.

    A declared ``Content-Length`` over the limit is answered at once, without reading a byte
    of the body; a body without one (chunked) is counted as it streams in and refused at the
    chunk that crosses the limit.

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest body accepted (``[serve] max_body_bytes``).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request within the limit."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            message = _too_large(f"{int(declared)} bytes (Content-Length)", self.max_bytes)
            await error_response(413, "body", message)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLargeError(
                        _too_large(
                            f"over {self.max_bytes} bytes ({received} received)", self.max_bytes
                        )
                    )
            return message

        await self.app(scope, counted, send)


class HeadAsGetMiddleware:
    """Answers ``HEAD`` on ``paths`` as ``GET`` would, without the body (same status and
    headers, ``Content-Length`` included).

    Args:
        app: the wrapped ASGI app.
        paths: the paths whose ``GET`` has no side effect (``/health``).
    """

    def __init__(self, app: ASGIApp, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        if scope["type"] != "http" or scope["method"] != "HEAD" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        scope["method"] = "GET"  # in place: the router notes the route in this same scope
        try:
            await self.app(scope, receive, headers_only)
        finally:
            scope["method"] = "HEAD"
