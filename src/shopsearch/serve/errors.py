"""Every error answer is JSON ``{"error": {"parameter": name, "message": text}}``.

``parameter`` names what to fix: a query or path parameter (``size``), a body field
(``events[3].kind``), ``body`` for the body as a whole, ``Authorization``, or ``path``/``method``
for an unknown endpoint. ``message`` says the value, the limit and the fix.

Status codes: 422 when a value does not have the declared type or bounds (FastAPI's request
validation, reworded here; ids also follow the one id rule of
:func:`~shopsearch.catalog.limits.id_problem`), 400 when it is well-formed but wrong (unknown
domain or request id, empty query without a filter, an event on a product its search did not
show or with a time outside the accepted window), 401/403 for the admin token, 404 for something
that does not exist, 409 for a refused reload, a catalog write the server cannot make, an event
id reused for another event, or an event whose search is not in the event log, 413 for a body
over ``[serve] max_body_bytes``, 503 when the event log cannot be written. Only a bug answers
500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from shopsearch.catalog.limits import ID_RULE
from shopsearch.errors import InvalidInputError, ShardUnavailableError

logger = logging.getLogger(__name__)


class JsonResponse(JSONResponse):
    """A JSON response rendered with orjson."""

    def render(self, content: Any) -> bytes:
        """``content`` as JSON bytes."""
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class ApiError(Exception):
    """An error answer: HTTP ``status``, the ``parameter`` to fix and a ``message``."""

    def __init__(
        self,
        status: int,
        parameter: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.parameter = parameter
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, parameter: str, message: str, headers: Mapping[str, str] | None = None
) -> JsonResponse:
    """The JSON error answer."""
    body = {"error": {"parameter": parameter, "message": message}}
    return JsonResponse(body, status_code=status, headers=headers)


def parameter_name(loc: Sequence[int | str]) -> str:
    """``("body", "events", 3, "kind")`` → ``events[3].kind``; ``("query", "size")`` → ``size``."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    if not parts:
        return str(loc[0]) if loc else "request"
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


class _Raw(str):
    """A query or path value, shown as typed (no quotes)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str.__str__(self)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_FIXES = {
    "int_parsing": "give a whole number",
    "int_from_float": "give a whole number",
    "float_parsing": "give a number",
    "float_type": "give a number",
    "int_type": "give a whole number",
    "finite_number": "give a finite number",
    "bool_parsing": "give true/false or 1/0",
    "bool_type": "give true or false",
    "string_type": "give a string",
    "datetime_parsing": "give an ISO-8601 time such as 2024-05-01T12:30:00Z",
    "datetime_from_date_parsing": "give an ISO-8601 time such as 2024-05-01T12:30:00Z",
    "datetime_type": "give an ISO-8601 time such as 2024-05-01T12:30:00Z",
    "list_type": "give a JSON array",
    "dict_type": "give a JSON object",
    "model_attributes_type": "give a JSON object",
}


def validation_message(error: Mapping[str, Any]) -> str:
    """A message with the value, the limit and the fix for one pydantic error."""
    loc = tuple(error.get("loc", ()))
    name = parameter_name(loc)
    kind = error.get("type", "")
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        return f"{name} is required; give a value for it"
    if kind == "invalid_id":
        return f"{name}={value!r} is not an id: {ctx.get('problem')}; {ID_RULE}"
    if kind == "json_invalid" or (loc == ("body",) and isinstance(value, bytes | str)):
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        problem = f" ({ctx['error']}{where})" if "error" in ctx else ""
        return (
            f"the body is not a valid JSON object{problem}; send a JSON object with "
            "Content-Type: application/json (see /docs)"
        )
    if loc and loc[0] in ("query", "path") and isinstance(value, str):
        value = _Raw(value)
    if kind == "string_too_long":
        size = len(value) if isinstance(value, str) else "too many"
        return f"{name} is {size} characters long; the limit is {ctx.get('max_length')}; shorten it"
    if kind == "string_too_short":
        return f"{name} is empty; give at least {ctx.get('min_length')} character(s)"
    if kind == "too_long":
        limit = ctx.get("max_length")
        actual = ctx.get("actual_length")
        return f"{name} has {actual} items; the limit is {limit}; send at most {limit}"
    if kind == "too_short":
        actual, least = ctx.get("actual_length"), ctx.get("min_length")
        return f"{name} has {actual} items; give at least {least}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        sign = ">=" if kind == "greater_than_equal" else ">"
        return f"{name}={_shown(value)} is too small; use {name} {sign} {bound}"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        sign = "<=" if kind == "less_than_equal" else "<"
        return f"{name}={_shown(value)} is above the limit {bound}; use {name} {sign} {bound}"
    if kind == "literal_error":
        return f"{name}={_shown(value)} is not one of {ctx.get('expected')}"
    if kind == "extra_forbidden":
        return f"{name} is not a known field; remove it (see the API schema at /docs)"
    fix = _FIXES.get(kind, "see the API schema at /docs")
    return f"{name}={_shown(value)} is not allowed: {error.get('msg', kind)}; {fix}"


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, including FastAPI's validation errors, in the shape above."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.parameter, exc.message, exc.headers)

    async def invalid_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        first = errors[0] if errors else {"loc": ("request",), "msg": "invalid request"}
        message = validation_message(first)
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem(s))"
        loc = ("body",) if first.get("type") == "json_invalid" else first.get("loc", ())
        return error_response(422, parameter_name(loc), message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path
        if exc.status_code == 404:
            return error_response(404, "path", f"no endpoint or file at {path}; see /docs")
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            return error_response(
                405,
                "method",
                f"{request.method} is not allowed on {path}; use {allowed or 'another method'}",
                exc.headers,
            )
        parameter = "body" if exc.status_code == 413 else "request"
        return error_response(exc.status_code, parameter, str(exc.detail), exc.headers)

    async def invalid_input(request: Request, exc: Exception) -> Response:
        return error_response(400, "request", str(exc))

    async def unavailable(request: Request, exc: Exception) -> Response:
        return error_response(503, "", str(exc), {"Retry-After": "1"})

    async def crash(request: Request, exc: Exception) -> Response:
        logger.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "", f"internal error ({type(exc).__name__}); see the server log")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(InvalidInputError, invalid_input)
    app.add_exception_handler(ShardUnavailableError, unavailable)
    app.add_exception_handler(Exception, crash)
