"""The accounting database: store an event once and refold its call, in one transaction.

Exactly-once by construction: :meth:`RecordStore.apply` inserts the event
under its unique key (a second copy inserts nothing), then, holding the
call's lock, reads every stored event of the Call-ID, folds them
(:mod:`services.accounting.fold`) and writes each record whose content
changed, bumping its version.  Applying an event twice, in any order, from any
number of instances, ends in the same rows.  The caller acknowledges the
message only after this returns, i.e. after the commit.

One code path for both databases through SQLAlchemy Core: only the
"insert unless present" statement and the lock differ.  PostgreSQL takes a
transaction-scoped advisory lock on the Call-ID's hash; SQLite has one
writer, and this process serialises its writes with an :class:`asyncio.Lock`
(an SQLite file is for the all-in-one's single instance only).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.accounting.events import event_data, event_key, load
from services.accounting.fold import TimeoutClose, fold_call
from services.accounting.schema import call_events, cdrs, migrate
from shared.contracts.accounting import CallRecord
from shared.contracts.calls import CallEvent

SQLITE_FILE = "accounting.sqlite3"


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as committed: its version, and whether this change wrote it."""

    record: CallRecord
    version: int
    changed: bool


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one event did: ``duplicate`` when it was already stored."""

    duplicate: bool
    records: tuple[StoredRecord, ...]


def database_url(url: str | None, data_dir: str) -> str:
    """The SQLAlchemy URL: PostgreSQL through asyncpg, else the SQLite file under ``data_dir``."""
    if not url:
        return f"sqlite+aiosqlite:///{Path(data_dir) / SQLITE_FILE}"
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def open_engine(url: str) -> AsyncEngine:
    """An engine for ``url``; SQLite files get WAL (readers never wait for the writer)."""
    engine = create_async_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(connection: Any, _record: Any) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine


class RecordStore:
    """Events in, records out, on one engine."""

    STALE_BATCH = 500
    """Attempts :meth:`stale` returns at most at once."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._writer = asyncio.Lock() if self.dialect == "sqlite" else None

    async def migrate(self) -> int:
        """Create or migrate the schema; returns the version found."""
        async with self.engine.begin() as connection:
            return await connection.run_sync(migrate)

    async def close(self) -> None:
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def _write(self, call_id: str) -> AsyncIterator[AsyncConnection]:
        """One write transaction holding the call's lock until commit."""
        async with contextlib.AsyncExitStack() as stack:
            if self._writer is not None:
                await stack.enter_async_context(self._writer)
            connection = await stack.enter_async_context(self.engine.begin())
            if self.dialect == "postgresql":
                await connection.execute(
                    text("SELECT pg_advisory_xact_lock(hashtextextended(:call_id, 0))"),
                    {"call_id": call_id},
                )
            yield connection

    def _insert_event(self, values: dict[str, Any]) -> Any:
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        return (
            insert(call_events).values(values).on_conflict_do_nothing(index_elements=["event_key"])
        )

    async def apply(self, call_event: CallEvent) -> Applied:
        """Store ``call_event`` unless it is already, and refold its call; commits."""
        values = {
            "event_key": event_key(call_event),
            "call_id": call_event.call_id,
            "type": call_event.routing_key,
            "at_ms": round(call_event.at * 1000),
            "data": event_data(call_event),
        }
        async with self._write(call_event.call_id) as connection:
            inserted = await connection.execute(self._insert_event(values))
            duplicate = inserted.rowcount == 0
            records = await self._refold(connection, call_event.call_id)
        return Applied(duplicate, records)

    async def _refold(self, connection: AsyncConnection, call_id: str) -> tuple[StoredRecord, ...]:
        rows = await connection.execute(
            select(call_events.c.type, call_events.c.data).where(call_events.c.call_id == call_id)
        )
        events = [e for kind, data in rows if (e := load(kind, data)) is not None]
        stored = {
            tag: (version, body)
            for tag, version, body in await connection.execute(
                select(cdrs.c.from_tag, cdrs.c.version, cdrs.c.record).where(
                    cdrs.c.call_id == call_id
                )
            )
        }
        results = []
        for record in fold_call(events):
            body = record.model_dump_json()
            version, old_body = stored.get(record.from_tag, (0, None))
            changed = body != old_body
            if changed:
                version += 1
                await self._write_record(connection, record, body, version, first=old_body is None)
            results.append(StoredRecord(record, version, changed))
        return tuple(results)

    async def _write_record(
        self,
        connection: AsyncConnection,
        record: CallRecord,
        body: str,
        version: int,
        *,
        first: bool,
    ) -> None:
        values = {
            "version": version,
            "state": record.state,
            "disposition": record.disposition,
            "setup_ms": round(record.setup_at * 1000),
            "answer_ms": None if record.answer_at is None else round(record.answer_at * 1000),
            "last_seen_ms": round(record.last_seen_at * 1000),
            "duration_ms": record.duration_ms,
            "billable_seconds": record.billable_seconds,
            "caller": record.caller_normalised,
            "callee": record.callee,
            "gateway": record.gateway,
            "rule": record.rule,
            "subscriber": record.subscriber,
            "record": body,
        }
        if first:
            values |= {"call_id": record.call_id, "from_tag": record.from_tag}
            await connection.execute(cdrs.insert().values(values))
        else:
            key = (cdrs.c.call_id == record.call_id) & (cdrs.c.from_tag == record.from_tag)
            await connection.execute(cdrs.update().where(key).values(values))

    async def stale(self, last_seen_before: float) -> list[tuple[str, str]]:
        """Open attempts (Call-ID, From tag) with no sign of life since ``last_seen_before``."""
        query = (
            select(cdrs.c.call_id, cdrs.c.from_tag)
            .where(cdrs.c.state == "open", cdrs.c.last_seen_ms < round(last_seen_before * 1000))
            .order_by(cdrs.c.last_seen_ms)
            .limit(self.STALE_BATCH)
        )
        async with self.engine.connect() as connection:
            return [(row.call_id, row.from_tag) for row in await connection.execute(query)]

    async def close_timed_out(self, call_id: str, from_tag: str, now: float) -> Applied:
        """Store the timeout close of one attempt (once: its key ignores ``now``) and refold."""
        close = TimeoutClose(call_id=call_id, from_tag=from_tag, at=now, edge="")
        values = {
            "event_key": event_key(close.model_copy(update={"at": 0.0})),
            "call_id": call_id,
            "type": close.routing_key,
            "at_ms": round(now * 1000),
            "data": event_data(close),
        }
        async with self._write(call_id) as connection:
            inserted = await connection.execute(self._insert_event(values))
            records = await self._refold(connection, call_id)
        return Applied(inserted.rowcount == 0, records)

    async def counts(self) -> dict[str, int]:
        """Records per state (``open``, ``complete``), for the metrics."""
        query = select(cdrs.c.state, func.count()).group_by(cdrs.c.state)
        async with self.engine.connect() as connection:
            return {state: count for state, count in await connection.execute(query)}
