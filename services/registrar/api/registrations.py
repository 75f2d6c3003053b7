"""``/v1/registrations``: the bindings of an AoR, a paged listing, and removal.

The AoR is ``sip:alice@example.com`` (URL-encoded or not; ``alice@example.com``
works too). ``DELETE /v1/registrations/{aor}`` removes every binding,
``?contact=<uri>`` only that one; removals are announced as
``registrar.binding.removed`` with cause ``api``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status

from services.registrar.bindings import BindingStore
from shared.bus import Bus
from shared.contracts.registrar import BindingRemoved
from shared.registrar.location import lookup_bindings
from shared.registrar.model import Binding, parse_aor
from shared.sip.errors import SipParseError
from shared.sip.uri import parse_uri

Cursor = Annotated[int, Query(ge=0, description="0 to start; the previous page's next_cursor")]
Limit = Annotated[int, Query(ge=1, le=10_000, description="about this many AoRs per page")]
Contact = Annotated[str | None, Query(max_length=1024, description="remove only this contact URI")]
Aor = Annotated[
    str, Path(max_length=600, description="sip:user@domain (URL-encoded or not), or user@domain")
]


def shown(binding: Binding, now: float) -> dict[str, Any]:
    return {**binding.location().model_dump(mode="json"), "expires": binding.remaining(now)}


def registrations_router(bindings: BindingStore, bus: Bus) -> APIRouter:
    router = APIRouter(prefix="/registrations", tags=["registrar"])
    store = bindings.store

    def canonical(aor: str) -> str:
        try:
            return parse_aor(aor)
        except ValueError as error:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"bad AoR: {error}"
            ) from None

    @router.get("/{aor}", summary="The current bindings of an AoR, highest q first")
    async def get(aor: Aor) -> dict[str, Any]:
        canonical_aor, now = canonical(aor), time.time()
        found = await lookup_bindings(store, canonical_aor, now)
        return {"aor": canonical_aor, "bindings": [shown(b, now) for b in found]}

    @router.delete("/{aor}", summary="Remove an AoR's bindings (or one, with ?contact=)")
    async def delete(aor: Aor, contact: Contact = None) -> dict[str, Any]:
        canonical_aor, now = canonical(aor), time.time()
        if contact is not None:
            try:
                contact = str(parse_uri(contact))
            except SipParseError as error:
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, error.reason) from None

        def split(live: dict[str, Binding]) -> tuple[list[Binding], list[Binding]]:
            doomed = [b for b in live.values() if contact is None or b.contact == contact]
            return doomed, [b for b in live.values() if b not in doomed]

        removed, _ = await bindings.change(
            canonical_aor, now, split, lambda result: result[1] if result[0] else None
        )
        if not removed:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no such binding of {canonical_aor}")
        for binding in removed:
            await bus.publish(BindingRemoved(binding=binding.location(), cause="api"))
        return {"aor": canonical_aor, "removed": [b.contact for b in removed]}

    @router.get("", summary="A page of AoRs with their bindings")
    async def listing(cursor: Cursor = 0, limit: Limit = 100) -> dict[str, Any]:
        next_cursor, aors = await bindings.aors_page(cursor, limit)
        now = time.time()
        items = []
        for aor in aors:
            found = await lookup_bindings(store, aor, now)
            if found:
                items.append({"aor": aor, "bindings": [shown(b, now) for b in found]})
        return {"items": items, "next_cursor": next_cursor or None}

    return router
