"""``GET /search``, ``GET /domains`` and ``GET /health``."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import re
import typing
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query
from fastapi.responses import Response

from shopsearch.catalog.candidates import Filters
from shopsearch.catalog.limits import LIMITS
from shopsearch.catalog.models import CATEGORY_SEPARATOR
from shopsearch.errors import InvalidInputError
from shopsearch.events.records import Shown, now_us, search_line
from shopsearch.pipeline.payload import search_payload
from shopsearch.pipeline.request import ALL_DOMAINS, SearchParams, SearchResponse
from shopsearch.serve.errors import ApiError
from shopsearch.serve.models import DomainsOut, HealthOut, SearchOut
from shopsearch.serve.request_ids import MAX_USER_BYTES
from shopsearch.serve.responses import error_responses, json_response
from shopsearch.serve.state import ServerState
from shopsearch.serve.threads import limit_this_thread

F = TypeVar("F", bound=Callable[..., Any])
#: The user of a search that names none.
ANONYMOUS = "anonymous"


def with_local_annotations(func: F, namespace: dict[str, Any]) -> F:
    """``func`` with its string annotations evaluated, also against the local ``namespace``.

    FastAPI evaluates annotations against the module only; parameters whose bounds come from
    settings (``Query(le=limits.max_size)``) name variables of the enclosing function.
    """
    func.__annotations__ = typing.get_type_hints(func, localns=namespace, include_extras=True)
    return func


async def compute(state: ServerState, call: Callable[[], Response]) -> Response:
    """``call()`` on ``state.compute``'s threads, in a copy of this context (as anyio's hop
    does, e.g. for tracing spans). ``run_in_executor`` without its per-call checks (is ``call``
    a coroutine function; 0.8% of a worker's CPU under load).

    With ``state.on_loop``, ``call()`` runs right here on the event loop instead, unless a
    catalog write holds or waits for the engine (then the search would block the loop until
    the write ends, so it goes to the threads as before; a write that starts between this
    check and the search's read of the engine still holds the loop up until it ends). A
    worker per core then computes one search at a time and hands no search, and no GIL,
    between threads.
    """
    if state.on_loop and not state.live.changing():
        return call()
    context = contextvars.copy_context()
    future = state.compute.submit(context.run, call)
    return await asyncio.wrap_future(future, loop=asyncio.get_running_loop())


def on_compute_threads(
    state: ServerState, func: Callable[..., Response]
) -> Callable[..., Awaitable[Response]]:
    """``func`` as an endpoint run on ``state.compute``'s threads.

    FastAPI would run a plain function on anyio's thread pool; handing it to an executor
    directly costs a third of the CPU (about 21 µs against 63 µs per call measured). The
    signature is ``func``'s (``functools.wraps``), so parameters and the schema are unchanged.
    """

    @functools.wraps(func)
    async def endpoint(*args: Any, **kwargs: Any) -> Response:
        return await compute(state, functools.partial(func, *args, **kwargs))

    return endpoint


def search_endpoint(state: ServerState) -> Callable[..., Response]:
    """The plain function behind ``GET /search`` (its parameters are the query's, with their
    limits from ``state.settings``); it raises :class:`ApiError` for a request it refuses."""
    limits = state.settings.search
    threads = state.settings.serve.compute_threads

    def search(
        q: Annotated[
            str,
            Query(
                max_length=limits.max_query_chars,
                description="What the user typed; may be empty only with a category or brand.",
            ),
        ] = "",
        domain: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=LIMITS.max_id_chars,
                description="Market to search (default: [search] default_domain, else the "
                "workspace's first market); * searches every market, where a product sold in "
                "several markets is one result per market.",
            ),
        ] = None,
        user: Annotated[
            str | None,
            Query(min_length=1, max_length=MAX_USER_BYTES, description="Who searches."),
        ] = None,
        page: Annotated[int, Query(ge=1, le=limits.max_page)] = 1,
        size: Annotated[int, Query(ge=1, le=limits.max_size)] = min(
            limits.default_size, limits.max_size
        ),
        category: Annotated[
            str | None,
            Query(max_length=LIMITS.max_text_chars, description='Path prefix: "A > B".'),
        ] = None,
        brand: Annotated[str | None, Query(max_length=LIMITS.max_name_chars)] = None,
        price_min: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        price_max: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
        in_stock: Annotated[bool | None, Query(description="true/false or 1/0.")] = None,
        explain: Annotated[bool, Query(description="Each stage's score per item.")] = False,
        correct: Annotated[
            bool,
            Query(description="Let spelling correction change q (false: search it as typed)."),
        ] = True,
    ) -> Response:
        path = _category(category)
        if not has_words(q) and not path and not brand:
            raise ApiError(
                400,
                "q",
                f"q={q!r} is empty: it has no words (letters or digits) to search for; give "
                "search words, or browse with a category or brand filter (e.g. "
                "category=Furniture)",
            )
        if user is not None and len(user.encode()) > MAX_USER_BYTES:
            raise ApiError(
                422,
                "user",
                f"user is {len(user.encode())} bytes in UTF-8; the limit is "
                f"{MAX_USER_BYTES}; use a shorter user id",
            )
        if price_min is not None and price_max is not None and price_min > price_max:
            raise ApiError(
                400,
                "price_min",
                f"price_min={price_min} is above price_max={price_max}; use price_min <= price_max",
            )
        filters = Filters(
            category=path,
            brand=brand or None,
            price_min=price_min,
            price_max=price_max,
            in_stock=in_stock,
        )
        with state.live.reading() as served:
            if domain not in (ALL_DOMAINS, None) and domain not in served.domains:
                raise ApiError(
                    400,
                    "domain",
                    f"unknown domain {domain!r}; domains are "
                    f"{', '.join(sorted(served.domains))} (see /domains), or * for all",
                )
            domain = served.engine.resolve_domain(domain)
            params = SearchParams(
                q, domain, user, filters, page, size, explain=True, correct=correct
            )
            limit_this_thread(threads)  # OpenMP thread counts are per thread
            try:
                with state.search_slots:
                    response = served.engine.search(params)
            except InvalidInputError as exc:
                raise ApiError(400, "request", str(exc)) from exc
        who, where = user or ANONYMOUS, domain or ALL_DOMAINS
        request_id = state.ids.issue(where, who)
        payload = search_payload(
            request_id, q, domain, page, size, response, explain, limits.max_page
        )
        _log(state, request_id, who, where, q, filters, payload, response)
        state.metrics.observe_stages(response.timings_ms)
        return json_response(payload)

    return with_local_annotations(search, locals())


def search_router(state: ServerState, search: Callable[..., Response]) -> APIRouter:
    """The read-only search endpoints; ``search`` is :func:`search_endpoint`'s function."""
    router = APIRouter()
    router.get(
        "/search",
        response_model=SearchOut,
        responses=error_responses(400, 422),
        summary="Search the catalog",
    )(on_compute_threads(state, search))

    @router.get("/domains", response_model=DomainsOut, summary="The markets")
    def domains() -> Response:
        return json_response({"domains": [d.model_dump() for d in state.domains]})

    @router.get("/health", response_model=HealthOut, summary="Liveness and the bundle served")
    def health() -> Response:
        served = state.live.current
        return json_response(
            {"status": "ok", "bundle": served.bundle, "products": len(served.engine.products)}
        )

    return router


_WORD = re.compile(r"[^\W_]")


def has_words(text: str) -> bool:
    """Whether ``text`` has a letter or digit to search for."""
    return _WORD.search(text) is not None


def _category(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    parts = tuple(p.strip() for p in text.split(CATEGORY_SEPARATOR.strip()) if p.strip())
    return parts or None


def _log(
    state: ServerState,
    request_id: str,
    user: str,
    domain: str,
    query: str,
    filters: Filters,
    payload: dict[str, Any],
    response: SearchResponse,
) -> None:
    shown = [
        Shown(
            item["product_id"],
            item["position"],
            item["price"],
            {k: v for k, v in found.stages.items() if v is not None},
            item["domain"],
        )
        for item, found in zip(payload["items"], response.items, strict=True)
    ]
    logged = {
        "category": CATEGORY_SEPARATOR.join(filters.category) if filters.category else None,
        "brand": filters.brand,
        "price_min": None if filters.price_min is None else str(filters.price_min),
        "price_max": None if filters.price_max is None else str(filters.price_max),
        "in_stock": None if filters.in_stock is None else str(filters.in_stock).lower(),
    }
    line = search_line(
        request_id,
        user,
        domain,
        query,
        {k: v for k, v in logged.items() if v is not None},
        now_us(),
        shown,
        response.stream or (),
    )
    state.log.submit(line)
