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
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.accounting.bulk import among, upsert
from services.accounting.events import event_data, event_key, key_of, load
from services.accounting.fold import TimeoutClose, fold_call
from services.accounting.schema import call_events, cdrs, migrate
from shared.contracts.accounting import CallRecord
from shared.contracts.calls import CallEvent

SQLITE_FILE = "accounting.sqlite3"
RECORD_KEY = ("call_id", "from_tag")
"""A record's key in ``cdrs``."""
EVENT_KEY = ("event_key",)
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialisation failure, deadlock detected: the transaction may simply be run again."""


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


def unavailable(error: Exception) -> bool:
    """Whether a write failed for a reason that passes (worth retrying the same events).

    The database could not be reached, or PostgreSQL aborted the transaction
    to break a deadlock or a serialisation conflict (two calls whose lock keys
    collide, taken by two instances in opposite orders).
    """
    if isinstance(error, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(error, DBAPIError):
        state = getattr(error.orig, "sqlstate", None)
        return error.connection_invalidated or state in TRANSIENT_SQLSTATES
    return False


def event_row(call_event: CallEvent) -> dict[str, Any]:
    data, kind = event_data(call_event), call_event.routing_key
    return {
        "event_key": key_of(kind, data),
        "call_id": call_event.call_id,
        "type": kind,
        "at_ms": round(call_event.at * 1000),
        "data": data,
    }


def record_row(record: CallRecord, body: str, version: int) -> dict[str, Any]:
    """The ``cdrs`` row of a record: the columns the API filters, sorts and sums on, and JSON."""
    return {
        "call_id": record.call_id,
        "from_tag": record.from_tag,
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
        "peer": record.peer,
        "record": body,
    }


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
    async def _write(self, call_ids: Sequence[str]) -> AsyncIterator[AsyncConnection]:
        """One write transaction holding the calls' locks until commit.

        The locks are taken in one statement, in sorted order, so that two
        instances writing overlapping calls wait for each other, never deadlock.
        """
        async with contextlib.AsyncExitStack() as stack:
            if self._writer is not None:
                await stack.enter_async_context(self._writer)
            connection = await stack.enter_async_context(self.engine.begin())
            if self.dialect == "postgresql":
                await connection.execute(
                    text(
                        "SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) "
                        "FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS ids(id, n) "
                        "ORDER BY n"
                    ),
                    {"ids": sorted(set(call_ids))},
                )
            yield connection

    async def _insert_events(
        self, connection: AsyncConnection, rows: list[dict[str, Any]]
    ) -> set[str]:
        """Insert the rows whose key is not stored yet; the keys inserted."""
        unique = list({row["event_key"]: row for row in reversed(rows)}.values())
        statement, parameters = upsert(
            self.dialect, call_events, unique, EVENT_KEY, update=False, returning="event_key"
        )
        return set((await connection.execute(statement, parameters)).scalars())

    async def apply(self, call_event: CallEvent) -> Applied:
        """Store ``call_event`` unless it is already, and refold its call; commits."""
        return (await self.apply_many([call_event]))[0]

    async def apply_many(self, batch: Sequence[CallEvent]) -> list[Applied]:
        """:meth:`apply` for each event, all in one transaction (one commit for many).

        Each call's change is reported once, with the batch's first event of
        that call; the others of the same call see its records as unchanged.
        """
        rows = [event_row(event) for event in batch]
        call_ids = sorted({event.call_id for event in batch})
        known = {row["event_key"]: event for row, event in zip(rows, batch, strict=True)}
        async with self._write(call_ids) as connection:
            events = await self._events(connection, call_ids, known)
            inserted = await self._insert_events(connection, rows)
            refolded = await self._refold(connection, events)
        results = []
        unchanged: dict[str, tuple[StoredRecord, ...]] = {}
        """Per call already reported: its records as the batch's later events see them."""
        keys_seen: set[str] = set()
        for call_event, row in zip(batch, rows, strict=True):
            key = row["event_key"]
            duplicate = key not in inserted or key in keys_seen
            keys_seen.add(key)
            call_id = call_event.call_id
            records = unchanged.get(call_id)
            if records is None:
                records = refolded.get(call_id, ())
                unchanged[call_id] = tuple(replace(stored, changed=False) for stored in records)
            results.append(Applied(duplicate, records))
        return results

    async def _events(
        self,
        connection: AsyncConnection,
        call_ids: Sequence[str],
        known: Mapping[str, CallEvent],
    ) -> dict[str, list[CallEvent]]:
        """Every event of each call: those stored, and ``known`` (decoded, by key).

        Read under the calls' locks before the batch's own are inserted, so the
        database sends back only what came before (nothing, for a new call),
        and a stored event the batch brings again (a redelivery) is not parsed
        twice: its key is the same.
        """
        events: dict[str, list[CallEvent]] = {call_id: [] for call_id in call_ids}
        query = select(
            call_events.c.event_key, call_events.c.call_id, call_events.c.type, call_events.c.data
        ).where(among(self.dialect, call_events.c.call_id, call_ids))
        for key, call_id, kind, data in await connection.execute(query):
            loaded = None if key in known else load(kind, data)
            if loaded is not None:
                events[call_id].append(loaded)
        for decoded in known.values():
            events[decoded.call_id].append(decoded)
        return events

    async def _refold(
        self, connection: AsyncConnection, events: Mapping[str, list[CallEvent]]
    ) -> dict[str, tuple[StoredRecord, ...]]:
        """Fold each call's ``events`` (all of them); write the records that changed."""
        call_ids = list(events)
        query = select(cdrs.c.call_id, cdrs.c.from_tag, cdrs.c.version, cdrs.c.record).where(
            among(self.dialect, cdrs.c.call_id, call_ids)
        )
        stored: dict[tuple[str, str], tuple[int, str | None]] = {
            (row.call_id, row.from_tag): (row.version, row.record)
            for row in await connection.execute(query)
        }
        results: dict[str, tuple[StoredRecord, ...]] = {}
        changes: list[dict[str, Any]] = []
        for call_id in call_ids:
            folded: list[StoredRecord] = []
            for record in fold_call(events[call_id]):
                body = record.model_dump_json()
                version, old_body = stored.get((call_id, record.from_tag), (0, None))
                changed = body != old_body
                if changed:
                    version += 1
                    changes.append(record_row(record, body, version))
                folded.append(StoredRecord(record, version, changed))
            results[call_id] = tuple(folded)
        if changes:
            # New and changed records in one statement; the call locks make the read
            # above still true.
            await connection.execute(*upsert(self.dialect, cdrs, changes, RECORD_KEY, update=True))
        return results

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
        row = event_row(close) | {"event_key": event_key(close.model_copy(update={"at": 0.0}))}
        async with self._write([call_id]) as connection:
            inserted = await self._insert_events(connection, [row])
            # Read after the insert: a close stored before, at another time, is the one kept.
            refolded = await self._refold(connection, await self._events(connection, [call_id], {}))
        return Applied(not inserted, refolded.get(call_id, ()))

    async def counts(self) -> dict[str, int]:
        """Records per state (``open``, ``complete``), for the metrics."""
        query = select(cdrs.c.state, func.count()).group_by(cdrs.c.state)
        async with self.engine.connect() as connection:
            return {state: count for state, count in await connection.execute(query)}
