"""``/v1/dispatcher/sets``: destination sets the edges dispatch to, kept in Redis.

Each change is announced as ``health.dispatcher.upserted|deleted`` with the
whole set, so edges update their caches without reading Redis, and the
health instances start or stop probing the destinations.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status

from services.health.catalog import Catalog
from shared.bus import Bus
from shared.contracts.health import DispatcherSetDeleted, DispatcherSetUpserted
from shared.dispatcher import DispatcherSet
from shared.dispatcher.model import SET_ID_PATTERN
from shared.health.store import HealthStore

SetIdPath = Annotated[str, Path(pattern=rf"^{SET_ID_PATTERN}$")]


def dispatcher_router(store: HealthStore, catalog: Catalog, bus: Bus) -> APIRouter:
    router = APIRouter(prefix="/dispatcher/sets", tags=["dispatcher"])

    @router.put("/{set_id}", summary="Create or replace a destination set")
    async def put(set_id: SetIdPath, body: DispatcherSet) -> dict[str, Any]:
        await store.put_dispatcher_set(set_id, body)
        catalog.put_set(set_id, body)
        await bus.publish(DispatcherSetUpserted(set_id=set_id, set=body))
        return {"id": set_id, **body.model_dump(mode="json")}

    @router.get("/{set_id}", summary="One destination set")
    async def get(set_id: SetIdPath) -> dict[str, Any]:
        found = await store.dispatcher_set(set_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dispatcher set {set_id!r}")
        return {"id": set_id, **found.model_dump(mode="json")}

    @router.delete("/{set_id}", summary="Delete a destination set")
    async def delete(set_id: SetIdPath) -> dict[str, Any]:
        if not await store.delete_dispatcher_set(set_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dispatcher set {set_id!r}")
        catalog.delete_set(set_id)
        await bus.publish(DispatcherSetDeleted(set_id=set_id))
        return {"id": set_id}

    @router.get("", summary="Every destination set")
    async def listing() -> dict[str, Any]:
        sets = await store.dispatcher_sets()
        return {
            "items": [
                {"id": set_id, **found.model_dump(mode="json")}
                for set_id, found in sorted(sets.items())
            ]
        }

    return router
