"""Bearer-token check for every ``/v1`` route.

The token comparison is constant-time so the admin API leaks nothing through
timing; without a configured token the API is open, which the settings only
allow on loopback (``Settings.check_api_exposure``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

_bearer = HTTPBearer(auto_error=False)

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def token_guard(token: str | None) -> Callable[[HTTPAuthorizationCredentials | None], None]:
    """A dependency that admits a request carrying ``Authorization: Bearer <token>``."""
    expected = token.encode() if token else None

    def require_token(credentials: Credentials) -> None:
        if expected is None:
            return
        if credentials is None or not hmac.compare_digest(
            credentials.credentials.encode(), expected
        ):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return require_token
