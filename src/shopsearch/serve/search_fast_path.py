"""``GET /search`` answered without FastAPI's routing and per-parameter handling.

Under load a worker spent about as much CPU in FastAPI's route matching, dependency solving
and parameter validation as in the search itself (py-spy, RESULTS.md). :class:`SearchFastPath`
sits in front of the app: a ``GET /search`` without a body has its query string validated in
one pass by a pydantic model built from the route's own parameter declarations (the same
types, defaults and limits, so the same values are accepted and converted the same way), and
the route's function is called on the compute threads as FastAPI would call it. A request the
model refuses, and every other request, goes on to FastAPI unchanged, which answers it as
before (with its 422 for a bad parameter): the fast path only answers what FastAPI would answer
the same way. The route object is put in the request's scope, so the metrics label it
``/search`` as before.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError, create_model
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from shopsearch.serve.routes_search import compute
from shopsearch.serve.state import ServerState

#: ``exception class -> handler(request, exc)``, as ``FastAPI.exception_handlers``.
Handlers = Mapping[Any, Callable[..., Any]]


def query_model(route: APIRoute) -> type[BaseModel]:
    """A pydantic model of ``route``'s query parameters, keyed by their names in the URL.

    Raises:
        ValueError: the route reads more than its query (a body, headers, the request).
    """
    dependant = route.dependant
    other = (
        dependant.path_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.dependencies
        or dependant.request_param_name
        or dependant.response_param_name
    )
    if other:
        raise ValueError(f"{route.path} reads more than its query string; no fast path")
    fields: dict[str, Any] = {
        field.name: (field.field_info.annotation, field.field_info)
        for field in dependant.query_params
    }
    return create_model(f"{route.name}_query", **fields)


class SearchFastPath:
    """Answers a well-formed ``GET /search`` itself; passes everything else to ``app``.

    Args:
        app: the wrapped ASGI app (FastAPI's middleware stack below this one).
        state: the server's state (its compute threads).
        route: the ``/search`` route (its parameters, and the metrics' label).
        search: the route's plain function (:func:`~.routes_search.search_endpoint`).
        handlers: the app's exception handlers; an exception of the search with a handler
            of its own is answered by it, as FastAPI would, any other propagates.
    """

    def __init__(
        self,
        app: ASGIApp,
        state: ServerState,
        route: APIRoute,
        search: Callable[..., Response],
        handlers: Handlers,
    ) -> None:
        self.app = app
        self.state = state
        self.route = route
        self.search = search
        self.handlers = handlers
        self.model = query_model(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request."""
        kwargs = self._arguments(scope)
        if kwargs is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        try:
            response = await compute(self.state, lambda: self.search(**kwargs))
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            answer = handler(Request(scope, receive), exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)

    def _arguments(self, scope: Scope) -> dict[str, Any] | None:
        """The search's arguments when this path answers the request, else ``None``."""
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["path"] != "/search"
            or scope.get("root_path")
        ):
            return None
        for name, value in scope["headers"]:
            if name in (b"content-length", b"transfer-encoding") and value not in (b"0", b""):
                return None  # a body: FastAPI's body limit and errors apply
        # as Starlette's QueryParams reads it, the last of repeated keys winning as in FastAPI
        raw = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        try:
            parsed = self.model.model_validate(raw)
        except ValidationError:
            return None  # FastAPI answers with its 422
        return parsed.__dict__

    def _handler(self, exc: Exception) -> Callable[..., Any] | None:
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None  # the server-error middleware's (a 500), outside this one
            if cls in self.handlers:
                return self.handlers[cls]
        return None


__all__ = ["SearchFastPath", "query_model"]
