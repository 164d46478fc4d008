"""``POST /admin/reload`` and ``GET /metrics``."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response

from shopsearch.serve.auth import admin_guard
from shopsearch.serve.errors import ApiError
from shopsearch.serve.metrics import CONTENT_TYPE
from shopsearch.serve.models import ReloadIn, ReloadOut
from shopsearch.serve.responses import error_responses, json_response
from shopsearch.serve.state import ServerState


def admin_router(state: ServerState) -> APIRouter:
    """Reload and metrics endpoints."""
    router = APIRouter()

    @router.post(
        "/admin/reload",
        response_model=ReloadOut,
        dependencies=[Depends(admin_guard(state.settings))],
        responses=error_responses(400, 401, 403, 404, 409, 413, 422),
        summary="Serve another bundle without downtime (admin)",
    )
    async def reload(body: Annotated[ReloadIn | None, Body()] = None) -> Response:
        """Load and warm a bundle beside the served one, then switch to it.

        Searches in flight finish on the old engine; a bundle that does not load is refused
        with 409 and the old one keeps serving.
        """
        try:
            done = await asyncio.to_thread(state.live.reload, body.bundle if body else None)
        except ApiError:
            state.metrics.reloads.labels("refused").inc()
            raise
        state.metrics.reloads.labels("ok").inc()
        state.live.announce(done.bundle)
        state.refresh_domains()
        return json_response(
            {
                "bundle": done.bundle,
                "previous": done.previous,
                "products": done.products,
                "load_ms": done.load_ms,
            }
        )

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text."}},
        summary="Prometheus metrics",
    )
    def metrics() -> Response:
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)

    return router
