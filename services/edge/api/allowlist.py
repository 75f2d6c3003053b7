"""``/v1/protection/allowlist``: networks never flagged as scanners nor flood- or source-blocked.

Stored in the store (it survives restarts) and applied by every edge
worker, which reloads it on ``edge.protection.allowlist.changed``; putting
a network there also lifts its current flood blocks and scanner flags.
Accounts are still blocked for failed authentications from anywhere: an
allow-listed office NAT keeps a guessed account safe, only the address as
a whole is never blocked.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Response, status

from services.edge.api.announce import announce
from shared.bus import Bus
from shared.contracts.protection import AllowListChanged
from shared.protection import ProtectionStore
from shared.protection.store import AllowEntry

EntryId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


def allowlist_router(store: ProtectionStore, bus: Bus) -> APIRouter:
    router = APIRouter(prefix="/protection/allowlist", tags=["protection"])

    def view(entry_id: str, entry: AllowEntry) -> dict[str, Any]:
        return {"id": entry_id, **entry.model_dump()}

    @router.get("", summary="The allow-list")
    async def listing() -> dict[str, Any]:
        entries = await store.allowlist()
        return {"items": [view(entry_id, entries[entry_id]) for entry_id in sorted(entries)]}

    @router.get("/{entry_id}", summary="One allow-list entry")
    async def get(entry_id: EntryId) -> dict[str, Any]:
        entry = (await store.allowlist()).get(entry_id)
        if entry is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no allow-list entry {entry_id!r}")
        return view(entry_id, entry)

    @router.put("/{entry_id}", summary="Allow a network on every edge")
    async def put(entry_id: EntryId, body: AllowEntry) -> dict[str, Any]:
        await store.put_allowed(entry_id, body)
        await announce(bus, AllowListChanged())
        return view(entry_id, body)

    @router.delete("/{entry_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Remove an entry")
    async def delete(entry_id: EntryId) -> Response:
        if not await store.delete_allowed(entry_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no allow-list entry {entry_id!r}")
        await announce(bus, AllowListChanged())
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
