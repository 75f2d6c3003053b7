"""``/v1/open-calls`` (the live calls) and ``/v1/dialogs/{call_id}`` (what ending one needs).

Why here: the edges keep no dialog state, so the calls up now, and how to
reach each party of one, are only in the records the accounting service folds
from their events.  The edges' call control (``GET /v1/calls``, ``POST
/v1/calls/{id}:hangup``) asks these over HTTP.  ``/v1/dialogs/{call_id}`` gives
every attempt of the Call-ID, open or not (so a hang-up of a call already
ended is told from an unknown one), each with ``dialog``: the answered event's
``cseq`` and the ``caller``'s and ``callee``'s legs, ``null`` while unanswered
or when an older edge reported the answer without them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fastapi import APIRouter, HTTPException, status

from services.accounting.api.cdrs import CallId, Cursor, Limit, item, listing_page
from services.accounting.api.params import RecordFilters
from services.accounting.queries import RecordQueries
from shared.contracts.accounting import CallRecord
from shared.contracts.calls import CallAnswered


def dialog_of(record: CallRecord, answers: list[CallAnswered]) -> dict[str, Any] | None:
    """The legs of the record's answer: its earliest answered event that has them (the one the
    record's To tag came from, unless an older edge reported that one).  A B2BUA call's answer
    has none (the edge's engine holds its dialogs): its dialog names leg B's Call-ID instead
    (``b2bua_leg_call_id``), and the edge that answered, which holds the pair."""
    mine = [
        a
        for a in answers
        if a.from_tag == record.from_tag
        and (a.caller_leg is not None or a.b2bua_leg_call_id is not None)
    ]
    if not mine:
        return None
    answer = min(mine, key=lambda a: (a.at, a.to_tag))
    return {
        "to_tag": answer.to_tag,
        "edge": answer.edge,
        "cseq": answer.cseq,
        "caller": answer.caller_leg.model_dump(mode="json") if answer.caller_leg else None,
        "callee": answer.callee_leg.model_dump(mode="json") if answer.callee_leg else None,
        "b2bua_leg_call_id": answer.b2bua_leg_call_id,
    }


def open_calls_router(queries: RecordQueries) -> APIRouter:
    router = APIRouter(tags=["accounting"])

    @router.get("/open-calls", summary="The calls still open (live ones), newest first, in pages")
    async def open_calls(
        filters: RecordFilters, limit: Limit = 100, cursor: Cursor = None
    ) -> dict[str, Any]:
        """The records still ``open``, with the filters of ``GET /v1/cdrs``, newest first: what
        the edges' ``GET /v1/calls`` lists."""
        return await listing_page(queries, replace(filters, open_only=True), cursor, limit)

    @router.get("/dialogs/{call_id:path}", summary="Every attempt of one call, with its legs")
    async def dialogs(call_id: CallId) -> dict[str, Any]:
        """Every attempt of the Call-ID (open or not), each with ``dialog``: ``cseq`` (the
        INVITE's), ``to_tag``, ``edge`` and the ``caller``'s and ``callee``'s legs (Call-ID,
        target, From and To of a request to it, routes, next hop), or ``null`` while unanswered
        or when the answering edge did not record them; a B2BUA call's has no legs but
        ``b2bua_leg_call_id`` (its engine holds the dialogs).  What the edges' hang-up reads."""
        found = await queries.call(call_id)
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no record of this Call-ID")
        answers = await queries.answers(call_id)
        return {
            "items": [
                {**item(record, version), "dialog": dialog_of(record, answers)}
                for record, version in found
            ]
        }

    return router
