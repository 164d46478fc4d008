"""``POST /events``: clicks, add-to-carts and purchases, acknowledged once on disk.

Each event is checked against the search its ``request_id`` names, as the event log has it
(:class:`~shopsearch.events.searches.SearchLog`, shared by every worker through the log): the
product must be one the search showed, and is stored under that product's market (a search over
every market is stored per market, see :mod:`shopsearch.events.records`); the timestamp must lie
between the search and now, give or take ``[serve] event_time_tolerance_s``; and an event
recorded before (by this or another worker, or earlier in the batch) is acknowledged as a
duplicate and not stored again. Two requests of this process carrying the same new event do not
both store it: the second waits for the first's write.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from fastapi.responses import Response

from shopsearch.events.records import (
    EventFields,
    RecordedEvents,
    interaction_line,
    market_request_id,
    now_us,
    timestamp_us,
)
from shopsearch.events.searches import LoggedSearch
from shopsearch.serve.errors import ApiError
from shopsearch.serve.models import EventIn, EventsIn, EventsOut
from shopsearch.serve.request_ids import IssuedRequest
from shopsearch.serve.responses import error_responses, json_response
from shopsearch.serve.state import ServerState

#: Longest wait for a search that another worker served but has not written to its log yet.
SEARCH_WAIT_S = 1.0

_Key = tuple[str, ...]


@dataclass
class _Event:
    index: int
    fields: EventFields
    event_id: str | None
    search: LoggedSearch
    line: bytes

    def flight_keys(self) -> list[_Key]:
        """The in-flight keys of the event: its fields, and its id if it has one."""
        by_fields: _Key = tuple(map(str, self.fields))
        if self.event_id is None:
            return [by_fields]
        return [by_fields, ("id", self.fields[0], self.event_id)]


def events_router(state: ServerState) -> APIRouter:
    """The event endpoint."""
    router = APIRouter()
    in_flight: dict[_Key, asyncio.Event] = {}

    @router.post(
        "/events",
        response_model=EventsOut,
        responses=error_responses(400, 409, 413, 422, 503),
        summary="Log what users did with shown products",
    )
    async def post_events(body: EventsIn) -> Response:
        """Store the events, all or none; answers only after they are fsync'd.

        Each ``request_id`` must come from a ``/search`` answer of this workspace and each
        ``product_id`` from that answer's items; ``user_id`` defaults to that search's user and
        ``timestamp`` to now. Events recorded before are acknowledged as ``duplicates`` and not
        stored again.
        """
        issued: dict[str, tuple[int, IssuedRequest]] = {}
        for i, event in enumerate(body.events):
            if event.request_id not in issued:
                issued[event.request_id] = (i, _verify(state, i, event.request_id))
        searches = await _searches(state, issued)
        now = now_us()
        events = [
            _checked(state, i, event, issued[event.request_id][1], searches[event.request_id], now)
            for i, event in enumerate(body.events)
        ]
        new = await _reserve(state, in_flight, events)
        if new:
            await _write(state, in_flight, new)
        return json_response({"accepted": len(events), "duplicates": len(events) - len(new)})

    return router


async def _write(
    state: ServerState, in_flight: dict[_Key, asyncio.Event], new: list[_Event]
) -> None:
    """Append the new events to the log and record them; others wait for them meanwhile."""
    done = asyncio.Event()
    for event in new:
        for key in event.flight_keys():
            in_flight[key] = done
    try:
        await state.log.write(b"".join(e.line for e in new), len(new))
    except OSError as exc:
        raise ApiError(
            503,
            "events",
            f"the event log could not be written ({exc}); nothing was stored; retry later",
        ) from exc
    else:
        with state.searches.lock:
            for event in new:
                event.search.recorded.add(event.fields, event.event_id)
    finally:
        for event in new:
            for key in event.flight_keys():
                in_flight.pop(key, None)
        done.set()


def _verify(state: ServerState, i: int, request_id: str) -> IssuedRequest:
    issued = state.ids.verify(request_id)
    if issued is None:
        shown = request_id if len(request_id) <= 60 else request_id[:57] + "..."
        raise ApiError(
            400,
            f"events[{i}].request_id",
            f"unknown request_id {shown!r}: no search of this workspace issued it; use "
            "the request_id of the /search answer that showed the product",
        )
    return issued


async def _searches(
    state: ServerState, issued: dict[str, tuple[int, IssuedRequest]]
) -> dict[str, LoggedSearch]:
    """The logged search of every request id, from memory or (in a thread) the log."""
    found = {rid: state.searches.get(rid) for rid in issued}
    missing = [rid for rid, search in found.items() if search is None]
    if missing:
        with contextlib.suppress(OSError):  # this worker's searches reach the disk first
            await state.log.write(b"", 0)
        for rid in missing:
            found[rid] = await asyncio.to_thread(state.searches.find, rid, SEARCH_WAIT_S)
    else:
        await asyncio.to_thread(state.searches.refresh)  # other workers' newest events
    result = {}
    for rid, search in found.items():
        if search is None:
            raise ApiError(
                409,
                f"events[{issued[rid][0]}].request_id",
                "the search of this request_id is not in the event log (it was not logged: the "
                "log was overloaded, or its rows were removed), so its events cannot be "
                "checked against what it showed; nothing was stored; if the search was served "
                "this second, retry",
            )
        result[rid] = search
    return result


def _checked(
    state: ServerState,
    i: int,
    event: EventIn,
    issued: IssuedRequest,
    search: LoggedSearch,
    now: int,
) -> _Event:
    """The event as stored, or the 400 naming what is wrong with it."""
    market = _market(i, event, search)
    moment = now if event.timestamp is None else timestamp_us(event.timestamp)
    tolerance_s = state.settings.serve.event_time_tolerance_s
    tolerance = int(tolerance_s * 1_000_000)
    window = f"[serve] event_time_tolerance_s={tolerance_s:g}"
    if moment < search.timestamp - tolerance:
        raise ApiError(
            400,
            f"events[{i}].timestamp",
            f"timestamp={_iso(moment)} is before the search it refers to "
            f"({_iso(search.timestamp)}); the earliest accepted is "
            f"{_iso(search.timestamp - tolerance)} ({window}); send the time the user acted, "
            "or no timestamp for now",
        )
    if moment > now + tolerance:
        raise ApiError(
            400,
            f"events[{i}].timestamp",
            f"timestamp={_iso(moment)} is in the future; the latest accepted is "
            f"{_iso(now + tolerance)} (now + {window}); send the time the user acted in UTC, "
            "or no timestamp for now",
        )
    user = event.user_id or issued.user_id
    stored = market_request_id(search.request_id, search.domain, market)
    line = interaction_line(
        stored, user, event.product_id, event.kind, moment, event.value, event_id=event.event_id
    )
    fields = (stored, event.product_id, event.kind, user, event.value)
    return _Event(i, fields, event.event_id, search, line)


def _market(i: int, event: EventIn, search: LoggedSearch) -> str:
    """The market of the shown product the event is about."""
    markets = search.shown.get(event.product_id, [])
    if event.domain is not None and event.domain not in markets:
        markets = []
    if not markets:
        shown = ", ".join(repr(p) for p in list(search.shown)[:10]) or "nothing"
        more = f" and {len(search.shown) - 10} more" if len(search.shown) > 10 else ""
        where = "" if event.domain is None else f" in market {event.domain!r}"
        raise ApiError(
            400,
            f"events[{i}].product_id",
            f"product {event.product_id!r} was not shown{where} by the search of this "
            f"request_id; it showed {shown}{more}; use a product_id of that answer's items",
        )
    if len(markets) > 1 and event.domain is None:
        raise ApiError(
            400,
            f"events[{i}].domain",
            f"product {event.product_id!r} was shown in markets {', '.join(markets)} by this "
            "search; give the event's domain (the item's domain)",
        )
    return event.domain or markets[0]


async def _reserve(
    state: ServerState, in_flight: dict[_Key, asyncio.Event], events: list[_Event]
) -> list[_Event]:
    """The events that are new; waits for this process's writes of the same events first.

    Raises:
        ApiError: 409 for an event id recorded with other fields.
    """
    while True:
        new: list[_Event] = []
        waits: set[asyncio.Event] = set()
        batch = RecordedEvents()
        with state.searches.lock:
            for event in events:
                recorded = event.search.recorded.find(event.fields, event.event_id)
                earlier = batch.find(event.fields, event.event_id)
                _refuse_conflict(event, recorded or earlier)
                if recorded is not None or earlier is not None:
                    continue
                pending = [in_flight[k] for k in event.flight_keys() if k in in_flight]
                waits.update(pending)
                batch.add(event.fields, event.event_id)
                new.append(event)
        if not waits:
            return new
        await asyncio.gather(*(wait.wait() for wait in waits))


def _refuse_conflict(event: _Event, recorded: EventFields | None) -> None:
    if event.event_id is None or recorded is None or recorded == event.fields:
        return
    _, product_id, kind, user_id, value = recorded
    raise ApiError(
        409,
        f"events[{event.index}].event_id",
        f"event_id={event.event_id!r} is recorded for this search as another event "
        f"(product {product_id!r}, kind {kind!r}, user {user_id!r}, value {value:g}); an "
        "event_id names one event: give this event a new event_id, or send the recorded one "
        "unchanged",
    )


def _iso(moment_us: int) -> str:
    try:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=moment_us)
    except OverflowError:
        return f"{moment_us} µs since 1970"
    return moment.isoformat().replace("+00:00", "Z")
