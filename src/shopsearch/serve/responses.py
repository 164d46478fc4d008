"""Response helpers shared by the endpoint modules."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from shopsearch.serve.models import ErrorOut


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers an endpoint may give."""
    return {code: {"model": ErrorOut, "description": "An error (see 'message')."} for code in codes}


def json_response(payload: object) -> Response:
    """``payload`` as JSON rendered by orjson, without a validation pass (hot paths).

    The endpoint still declares its ``response_model`` for the schema; the tests check that
    the answers conform to it.
    """
    return Response(orjson.dumps(payload), media_type="application/json")
