"""The query parameters ``/v1/cdrs``, its CSV and its summary share, checked on the way in.

Times are ISO 8601 (``2026-12-02T10:00:00Z``; without an offset, UTC) or Unix
seconds; a window whose ``since`` is not before its ``until`` is refused
(422), as is any value too long to be a real filter.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Query, status

from services.accounting.queries import Filters
from shared.contracts.accounting import Disposition

MAX_FILTER_CHARS = 256

Text = Annotated[str | None, Query(min_length=1, max_length=MAX_FILTER_CHARS)]
When = Annotated[datetime | None, Query(description="ISO 8601 or Unix seconds; UTC if no offset")]


def unix_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def record_filters(
    *,
    since: When = None,
    until: When = None,
    caller: Text = None,
    callee: Text = None,
    gateway: Text = None,
    disposition: Annotated[Disposition | None, Query()] = None,
    subscriber: Text = None,
    peer: Text = None,
) -> Filters:
    """The filters of a request; setup time in ``[since, until)``, the rest exact matches."""
    since_ms = None if since is None else unix_ms(since)
    until_ms = None if until is None else unix_ms(until)
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        detail = [{"loc": ["query", "until"], "msg": "must be after since", "type": "value_error"}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=detail)
    return Filters(
        since_ms=since_ms,
        until_ms=until_ms,
        caller=caller,
        callee=callee,
        gateway=gateway,
        disposition=disposition,
        subscriber=subscriber,
        peer=peer,
    )


RecordFilters = Annotated[Filters, Depends(record_filters)]
