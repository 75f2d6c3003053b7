"""The accounting service's open calls and dialogs, asked over HTTP by the edge's call control.

Why HTTP: services never import each other, and the open calls are only in
the accounting service's records (the edges keep no dialog state).  The
address is ``CALLMESH_EDGE_ACCOUNTING_URL``; the edge's own API token, if any,
goes along (one token guards every service's API).  A refusal (4xx) is passed
on as it was; no answer, or a 5xx, is `AccountingUnavailableError`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


class CallControlSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CALLMESH_", extra="ignore", hide_input_in_errors=True
    )

    edge_accounting_url: str = ""
    """The accounting service's API (``http://host:port``) the edge's ``GET /v1/calls`` and
    ``POST /v1/calls/{id}:hangup`` ask; empty: call control is off (503)."""
    edge_accounting_timeout: float = Field(default=3.0, gt=0, le=30)
    """Seconds the edge waits for the accounting service's answer."""
    fraud_hangup: bool = False
    """Hang up the live calls of an account a fraud rule blocks (needs call control):
    `runtime.fraud_hangups`."""


class AccountingUnavailableError(Exception):
    """The accounting service gave no usable answer (unreachable, timed out, 5xx)."""


class AccountingRefusedError(Exception):
    """The accounting service refused the question (4xx): its status and detail."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class Listing(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None = None


class Accounting:
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self._url = url.rstrip("/")
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._timeout = timeout

    async def open_calls(self, params: dict[str, str]) -> Listing:
        """One page of the open calls (``GET /v1/open-calls`` with `params`)."""
        return _listing(await self._get("/v1/open-calls", params))

    async def dialogs(self, call_id: str) -> list[dict[str, Any]] | None:
        """Every attempt of `call_id` with its legs; None when there is no record of it."""
        try:
            found = await self._get(f"/v1/dialogs/{quote(call_id, safe='')}", {})
        except AccountingRefusedError as error:
            if error.status == 404:
                return None
            raise
        return _listing(found).items

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            async with httpx.AsyncClient(timeout=self._timeout, headers=self._headers) as client:
                reply = await client.get(self._url + path, params=params)
            body = reply.json()
        except (httpx.HTTPError, OSError, ValueError) as error:
            raise AccountingUnavailableError(f"no answer ({type(error).__name__})") from None
        if 400 <= reply.status_code < 500:
            detail = body.get("detail") if isinstance(body, dict) else None
            raise AccountingRefusedError(reply.status_code, detail)
        if reply.status_code != 200:
            raise AccountingUnavailableError(f"answered {reply.status_code}")
        return body


def _listing(body: Any) -> Listing:
    try:
        return Listing.model_validate(body)
    except ValidationError:
        raise AccountingUnavailableError("answered something that is not a listing") from None
