"""The admin token: catalog writes and reloads need ``Authorization: Bearer <token>``.

The token is ``serve.admin_token`` (e.g. ``SHOPSEARCH_SERVE__ADMIN_TOKEN``). Without one those
endpoints answer 403; a missing or wrong token answers 401. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shopsearch.config import Settings
from shopsearch.serve.errors import ApiError

bearer = HTTPBearer(auto_error=False, description="serve.admin_token")


def admin_guard(settings: Settings) -> Callable[[HTTPAuthorizationCredentials | None], None]:
    """A FastAPI dependency that admits only requests bearing the admin token."""
    secret = settings.serve.admin_token
    token = secret.get_secret_value().encode() if secret is not None else b""

    def guard(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if not token:
            raise ApiError(
                403,
                "Authorization",
                "admin endpoints are disabled: set serve.admin_token (in the config file, or "
                "SHOPSEARCH_SERVE__ADMIN_TOKEN) and restart the server",
            )
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, token):
            what = "wrong" if given else "missing"
            raise ApiError(
                401,
                "Authorization",
                f"{what} admin token; send the header 'Authorization: Bearer <serve.admin_token>'",
                {"WWW-Authenticate": "Bearer"},
            )

    return guard
