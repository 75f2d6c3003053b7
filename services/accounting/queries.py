"""Reading records back: filtered keyset pages, one call, and summaries by a column.

Pages are keyset, not offset: newest first by ``(setup time, Call-ID, From
tag)``, the cursor is the last row's key, so a page costs the same however
deep it is, and the CSV export walks the same pages with bounded memory.  The
cursor is opaque to clients (base64 of the key) and checked on the way in.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
from sqlalchemy import ColumnElement, Select, and_, case, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from services.accounting.schema import call_events, cdrs
from shared.contracts.accounting import CallRecord
from shared.contracts.calls import CallAnswered

SummaryBy = Literal["gateway", "rule", "disposition"]
CursorKey = tuple[int, str, str]


class BadCursorError(ValueError):
    """A cursor this service did not make."""


MAX_ANSWERS: Final = 256
"""Answers of one Call-ID read at most for its dialogs: a 2xx any host can send naming an
edge is an answer too (one per dialog a second), so their count has no bound of its own;
the earliest hold the call's real ones."""


@dataclass(frozen=True, slots=True)
class Filters:
    """What ``GET /v1/cdrs`` and its CSV select on; times are Unix milliseconds of the setup."""

    since_ms: int | None = None
    until_ms: int | None = None
    caller: str | None = None
    callee: str | None = None
    gateway: str | None = None
    disposition: str | None = None
    subscriber: str | None = None
    peer: str | None = None
    open_only: bool = False
    """Only the calls still open (live, or not yet closed): ``GET /v1/open-calls``."""

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.open_only:
            clauses.append(cdrs.c.state == "open")
        if self.since_ms is not None:
            clauses.append(cdrs.c.setup_ms >= self.since_ms)
        if self.until_ms is not None:
            clauses.append(cdrs.c.setup_ms < self.until_ms)
        for column, value in (
            (cdrs.c.caller, self.caller),
            (cdrs.c.callee, self.callee),
            (cdrs.c.gateway, self.gateway),
            (cdrs.c.disposition, self.disposition),
            (cdrs.c.subscriber, self.subscriber),
            (cdrs.c.peer, self.peer),
        ):
            if value is not None:
                clauses.append(column == value)
        return clauses


@dataclass(frozen=True, slots=True)
class Page:
    records: list[tuple[CallRecord, int]]
    """Each record with its version."""
    next_cursor: str | None


def encode_cursor(key: CursorKey) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str) -> CursorKey:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        setup_ms, call_id, from_tag = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadCursorError("not a cursor of this listing") from None
    if not (isinstance(setup_ms, int) and isinstance(call_id, str) and isinstance(from_tag, str)):
        raise BadCursorError("not a cursor of this listing")
    return setup_ms, call_id, from_tag


def _after(key: CursorKey) -> ColumnElement[bool]:
    """Rows after ``key`` in newest-first order.

    A row-value comparison (PostgreSQL; SQLite since 3.15), which the planner
    turns into a range of the ``(setup_ms, call_id, from_tag)`` index: the same
    condition spelled with ``OR`` made PostgreSQL scan from the first row on
    every page, and the export's time grow with the square of its size.
    """
    setup_ms, call_id, from_tag = key
    return and_(
        cdrs.c.setup_ms <= setup_ms,
        tuple_(cdrs.c.setup_ms, cdrs.c.call_id, cdrs.c.from_tag)
        < tuple_(setup_ms, call_id, from_tag),
    )


class RecordQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def _page_query(self, filters: Filters, cursor: CursorKey | None, limit: int) -> Select[Any]:
        query = select(
            cdrs.c.setup_ms, cdrs.c.call_id, cdrs.c.from_tag, cdrs.c.version, cdrs.c.record
        ).where(*filters.where())
        if cursor is not None:
            query = query.where(_after(cursor))
        return query.order_by(
            cdrs.c.setup_ms.desc(), cdrs.c.call_id.desc(), cdrs.c.from_tag.desc()
        ).limit(limit)

    async def page(self, filters: Filters, cursor: str | None, limit: int) -> Page:
        """One page of at most ``limit`` records; raises :class:`BadCursorError`."""
        key = decode_cursor(cursor) if cursor else None
        async with self.engine.connect() as connection:
            rows = (await connection.execute(self._page_query(filters, key, limit + 1))).all()
        more = len(rows) > limit
        rows = rows[:limit]
        records = [(CallRecord.model_validate_json(row.record), row.version) for row in rows]
        last = rows[-1] if more else None
        next_cursor = encode_cursor((last.setup_ms, last.call_id, last.from_tag)) if last else None
        return Page(records, next_cursor)

    async def walk(self, filters: Filters, page_size: int = 1000) -> AsyncIterator[CallRecord]:
        """Every matching record, newest first, ``page_size`` rows in memory at a time."""
        key: CursorKey | None = None
        while True:
            async with self.engine.connect() as connection:
                query = self._page_query(filters, key, page_size)
                rows = (await connection.execute(query)).all()
            for row in rows:
                yield CallRecord.model_validate_json(row.record)
            if len(rows) < page_size:
                return
            key = (rows[-1].setup_ms, rows[-1].call_id, rows[-1].from_tag)

    async def call(self, call_id: str) -> list[tuple[CallRecord, int]]:
        """Every attempt of one Call-ID with its version, by From tag."""
        query = (
            select(cdrs.c.record, cdrs.c.version)
            .where(cdrs.c.call_id == call_id)
            .order_by(cdrs.c.from_tag)
        )
        async with self.engine.connect() as connection:
            rows = await connection.execute(query)
            return [(CallRecord.model_validate_json(row.record), row.version) for row in rows]

    async def answers(self, call_id: str) -> list[CallAnswered]:
        """The earliest `MAX_ANSWERS` stored ``edge.call.answered`` of one Call-ID (what a
        hang-up builds its BYEs from: `CallAnswered.caller_leg` and `callee_leg`)."""
        query = (
            select(call_events.c.data)
            .where(call_events.c.call_id == call_id, call_events.c.type == CallAnswered.routing_key)
            .order_by(call_events.c.at_ms)
            .limit(MAX_ANSWERS)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [CallAnswered.model_validate_json(row.data) for row in rows]

    async def summary(self, filters: Filters, by: SummaryBy) -> list[dict[str, Any]]:
        """Attempts, answered, ASR, ACD (s) and minutes per value of ``by``."""
        column = cdrs.c[by]
        answered = func.sum(case((cdrs.c.answer_ms.is_not(None), 1), else_=0))
        query = (
            select(
                column.label("key"),
                func.count().label("attempts"),
                answered.label("answered"),
                func.sum(cdrs.c.duration_ms).label("duration_ms"),
            )
            .where(*filters.where())
            .group_by(column)
            .order_by(func.count().desc(), column)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [
            summary_row(by, row.key, row.attempts, row.answered, row.duration_ms) for row in rows
        ]


def summary_row(
    by: str, key: str | None, attempts: int, answered: int, duration_ms: int
) -> dict[str, Any]:
    answered, duration_ms = int(answered or 0), int(duration_ms or 0)
    return {
        by: key,
        "attempts": attempts,
        "answered": answered,
        "asr": round(answered / attempts, 4) if attempts else 0.0,
        "acd_seconds": round(duration_ms / answered / 1000, 3) if answered else 0.0,
        "minutes": round(duration_ms / 60000, 3),
    }
