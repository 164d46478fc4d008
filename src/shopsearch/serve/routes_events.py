"""``POST /events``: clicks, add-to-carts and purchases, acknowledged once on disk."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from shopsearch.events.records import interaction_line, now_us, timestamp_us
from shopsearch.serve.errors import ApiError
from shopsearch.serve.models import EventsIn, EventsOut
from shopsearch.serve.request_ids import IssuedRequest
from shopsearch.serve.responses import error_responses, json_response
from shopsearch.serve.state import ServerState


def events_router(state: ServerState) -> APIRouter:
    """The event endpoint."""
    router = APIRouter()

    @router.post(
        "/events",
        response_model=EventsOut,
        responses=error_responses(400, 422, 503),
        summary="Log what users did with shown products",
    )
    async def post_events(body: EventsIn) -> Response:
        """Store the events, all or none; answers only after they are fsync'd.

        Each ``request_id`` must come from a ``/search`` answer of this workspace; ``user_id``
        defaults to that search's user and ``timestamp`` to now.
        """
        served = state.live.current
        now = now_us()
        lines = []
        verified: dict[str, IssuedRequest | None] = {}
        for i, event in enumerate(body.events):
            if event.request_id not in verified:
                verified[event.request_id] = state.ids.verify(event.request_id)
            issued = verified[event.request_id]
            if issued is None:
                rid = event.request_id
                shown = rid if len(rid) <= 60 else rid[:57] + "..."
                raise ApiError(
                    400,
                    f"events[{i}].request_id",
                    f"unknown request_id {shown!r}: no search of this workspace issued it; use "
                    "the request_id of the /search answer that showed the product",
                )
            if not served.has_product(issued.domain, event.product_id):
                raise ApiError(
                    400,
                    f"events[{i}].product_id",
                    f"unknown product {event.product_id!r} in domain {issued.domain!r}; use a "
                    "product_id from the search's items",
                )
            moment = now if event.timestamp is None else timestamp_us(event.timestamp)
            lines.append(
                interaction_line(
                    event.request_id,
                    event.user_id or issued.user_id,
                    event.product_id,
                    event.kind,
                    moment,
                    event.value,
                )
            )
        try:
            await state.log.write(b"".join(lines), len(lines))
        except OSError as exc:
            raise ApiError(
                503, "events", f"the event log could not be written ({exc}); nothing was "
                "stored; retry later"
            ) from exc
        return json_response({"accepted": len(lines)})

    return router
