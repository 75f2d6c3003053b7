"""CRUD for one kind of table record: ``/gateways``, ``/carriers``, ``/rules``, ``/dialplans``.

The four resources behave identically (PUT is an idempotent upsert, DELETE a 404
when absent, listing pages through HSCAN because a table may hold a million
rules), so one builder serves them all, each with its own body model.
"""

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status

from services.routing.api.errors import unprocessable
from services.routing.writer import TableWriter
from shared.routing_table.changes import Change, InvalidChangeError
from shared.routing_table.model import ID_PATTERN, Kind, Record

RecordId = Annotated[str, Path(pattern=rf"^{ID_PATTERN}$")]
Cursor = Annotated[int, Query(ge=0, description="0 to start; the previous page's next_cursor")]
Limit = Annotated[int, Query(ge=1, le=10_000, description="about this many items per page")]

REFERENCING_FIELD: dict[Kind, str] = {"manipulation": "scope"}
"""The body field naming what a record refers to, when it is not `gateways` (rules, carriers)."""


def entity_router(kind: Kind, plural: str, model: type[Record], writer: TableWriter) -> APIRouter:
    router = APIRouter(prefix=f"/{plural}", tags=["routing"])
    store = writer.store

    def not_found(record_id: str) -> HTTPException:
        return HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind} {record_id!r}")

    async def put(record_id: RecordId, body: Record) -> dict[str, Any]:
        try:
            version = await writer.apply([Change("upsert", kind, record_id, body)])
        except InvalidChangeError as error:
            raise unprocessable(REFERENCING_FIELD.get(kind, "gateways"), str(error)) from None
        return {"id": record_id, "version": version, **body.model_dump(mode="json")}

    # The body's model differs per resource; FastAPI reads it from the annotation.
    put.__annotations__["body"] = model
    router.put("/{record_id}", summary=f"Create or replace a {kind}")(put)

    @router.get("/{record_id}", summary=f"One {kind}")
    async def get(record_id: RecordId) -> dict[str, Any]:
        record = await store.get(kind, record_id)
        if record is None:
            raise not_found(record_id)
        return {"id": record_id, **record.model_dump(mode="json")}

    @router.delete("/{record_id}", summary=f"Delete a {kind}")
    async def delete(record_id: RecordId) -> dict[str, Any]:
        if not await store.existing(kind, [record_id]):
            raise not_found(record_id)
        version = await writer.apply([Change("delete", kind, record_id)])
        return {"id": record_id, "version": version}

    @router.get("", summary=f"A page of {plural}")
    async def listing(cursor: Cursor = 0, limit: Limit = 1000) -> dict[str, Any]:
        next_cursor, records = await store.page(kind, cursor, limit)
        return {
            "items": [{"id": rid, **record.model_dump(mode="json")} for rid, record in records],
            "next_cursor": next_cursor or None,
        }

    return router
