"""``/v1/protection/blocks``: what the cluster blocks now, and the operator's clear.

Kinds: ``account`` (``user@realm``, failed authentications), ``source`` (an
IP address, failed authentications), ``flood`` (pike), ``scanner`` (flagged
as a scanner).  The list comes from the store, where every edge records its
blocks as they start; a clear removes the record and is broadcast
(``edge.protection.cleared``) so every edge worker forgets it at once.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from services.edge.api.announce import announce
from shared.bus import Bus
from shared.contracts.protection import ProtectionCleared
from shared.protection import ProtectionStore
from shared.protection.store import BLOCK_KINDS, BlockKind

BlockKey = Annotated[str, Path(min_length=1, max_length=300)]


def blocks_router(store: ProtectionStore, bus: Bus) -> APIRouter:
    router = APIRouter(prefix="/protection/blocks", tags=["protection"])

    @router.get("", summary="Every running block of the cluster")
    async def listing(kind: Annotated[BlockKind | None, Query()] = None) -> dict[str, Any]:
        now = time.time()
        kinds = BLOCK_KINDS if kind is None else (kind,)
        records = await store.blocks(now, kinds)
        items = [
            {**record.model_dump(), "remaining": max(0, round(record.until - now))}
            for record in records
        ]
        return {"items": items}

    @router.delete(
        "/{kind}/{key}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Lift a block on every edge (an authentication block's count starts over)",
    )
    async def clear(kind: BlockKind, key: BlockKey) -> Response:
        found = await store.clear(kind, key)
        await announce(bus, ProtectionCleared(kind=kind, key=key))
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind} block of {key!r}")
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
