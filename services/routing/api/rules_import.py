"""``POST /rules:import?mode=merge|replace``: a whole rate deck as CSV, live at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status

from services.routing.api.errors import unprocessable
from services.routing.deck import COLUMNS, DeckError, parse_deck
from services.routing.writer import TableWriter
from shared.routing_table.changes import InvalidChangeError
from shared.routing_table.store import ImportConflictError, ImportMode

Mode = Annotated[
    ImportMode, Query(description="merge: add/overwrite by id; replace: the deck is the table")
]

_CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string", "example": ",".join(COLUMNS)}}},
    }
}


def import_router(writer: TableWriter, max_body_size: int) -> APIRouter:
    """``max_body_size``: a deck's own body limit (``CALLMESH_API_MAX_IMPORT_BODY``),
    larger than the API's."""
    router = APIRouter(tags=["routing"])

    @router.post(
        "/rules:import",
        openapi_extra=_CSV_BODY,
        summary="Import a CSV rate deck",
        max_body_size=max_body_size,
    )
    async def import_rules(request: Request, mode: Mode = "merge") -> dict[str, Any]:
        try:
            text = (await request.body()).decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise unprocessable("csv", f"not UTF-8: {error}") from None
        try:
            rows = parse_deck(text)
        except DeckError as error:
            detail = [
                {"loc": ["body", f"line {p.line}", p.field], "msg": p.reason, "type": "value_error"}
                for p in error.problems
            ]
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail) from None
        try:
            imported = await writer.import_rules(rows, mode)
        except InvalidChangeError as error:
            raise unprocessable("gateways", str(error)) from None
        except ImportConflictError as error:
            raise HTTPException(status.HTTP_409_CONFLICT, str(error)) from None
        return {
            "mode": mode,
            "version": imported.version,
            "imported": len(rows),
            "rules": imported.rules,
        }

    return router
