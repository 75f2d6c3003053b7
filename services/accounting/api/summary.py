"""``/v1/cdrs/summary``: attempts, answered, ASR, ACD and minutes per gateway, rule or disposition.

ASR is answered / attempts; ACD the mean answered duration in seconds;
minutes the answered durations' sum.  The window is on setup time, as for the
listing, and the same filters apply.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.accounting.api.params import RecordFilters
from services.accounting.queries import RecordQueries, SummaryBy


def summary_router(queries: RecordQueries) -> APIRouter:
    router = APIRouter(prefix="/cdrs", tags=["accounting"])

    @router.get("/summary", summary="Totals per gateway, rule or disposition")
    async def summary(
        filters: RecordFilters, by: Annotated[SummaryBy, Query()] = "gateway"
    ) -> dict[str, Any]:
        return {"by": by, "items": await queries.summary(filters, by)}

    return router
