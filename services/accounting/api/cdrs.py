"""``/v1/cdrs``: call records as pages, one call, and the whole selection as streamed CSV.

Pages are ``{"items", "next_cursor"}``, newest first; pass ``next_cursor``
back as ``cursor`` for the next page (it is opaque, and ``null`` on the last
page).  Each item is the record with its ``version``.  The CSV walks the same
keyset pages, so its memory stays bounded however many records it sends.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import StreamingResponse

from services.accounting.api.params import RecordFilters
from services.accounting.queries import BadCursorError, Filters, RecordQueries
from shared.contracts.accounting import CallRecord

MAX_PAGE = 1000
CSV_PAGE = 1000
CSV_COLUMNS = (
    "call_id",
    "from_tag",
    "state",
    "disposition",
    "setup_at",
    "ring_at",
    "answer_at",
    "end_at",
    "post_dial_delay_ms",
    "duration_ms",
    "billable_seconds",
    "final_status",
    "final_reason",
    "hangup_side",
    "caller",
    "caller_normalised",
    "callee_dialled",
    "callee",
    "source",
    "transport",
    "subscriber",
    "group",
    "rule",
    "carrier",
    "gateway",
    "attempts",
    "edges",
    "peer",
)

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE)]
Cursor = Annotated[str | None, Query(min_length=1, max_length=512)]
CallId = Annotated[str, Path(min_length=1, max_length=512)]


def item(record: CallRecord, version: int) -> dict[str, Any]:
    return {**record.model_dump(mode="json"), "version": version}


def csv_row(record: CallRecord) -> list[object]:
    values = record.model_dump(mode="json")
    values["attempts"] = " ".join(f"{a.target}:{a.status}" for a in record.attempts)
    values["edges"] = " ".join(record.edges)
    return ["" if values[column] is None else values[column] for column in CSV_COLUMNS]


async def csv_lines(queries: RecordQueries, filters: Filters) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    count = 0
    async for record in queries.walk(filters, CSV_PAGE):
        writer.writerow(csv_row(record))
        count += 1
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


async def listing_page(
    queries: RecordQueries, filters: Filters, cursor: str | None, limit: int
) -> dict[str, Any]:
    """One page of records as the listings answer it; a cursor not of ours is a 400."""
    try:
        page = await queries.page(filters, cursor, limit)
    except BadCursorError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"bad cursor: {error}") from None
    return {
        "items": [item(record, version) for record, version in page.records],
        "next_cursor": page.next_cursor,
    }


def cdrs_router(queries: RecordQueries) -> APIRouter:
    router = APIRouter(prefix="/cdrs", tags=["accounting"])

    @router.get("", summary="Call records, newest first, in pages")
    async def listing(
        filters: RecordFilters, limit: Limit = 100, cursor: Cursor = None
    ) -> dict[str, Any]:
        return await listing_page(queries, filters, cursor, limit)

    @router.get(".csv", summary="Every selected record as CSV, streamed")
    async def export(filters: RecordFilters) -> StreamingResponse:
        return StreamingResponse(
            csv_lines(queries, filters),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="cdrs.csv"'},
        )

    # ``:path``: a Call-ID may hold ``/`` (RFC 3261's word characters), sent as is or as %2F.
    @router.get("/{call_id:path}", summary="Every attempt of one call")
    async def one_call(call_id: CallId) -> dict[str, Any]:
        found = await queries.call(call_id)
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no record of this Call-ID")
        return {"items": [item(record, version) for record, version in found]}

    return router
