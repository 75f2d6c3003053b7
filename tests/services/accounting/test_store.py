"""The store on SQLite and PostgreSQL: events kept once, records refolded, migrations in order."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import select, text

from services.accounting.fold import fold_call
from services.accounting.queries import Filters, RecordQueries
from services.accounting.schema import LATEST, call_events, cdrs, schema_version
from services.accounting.store import RecordStore, database_url, open_engine
from services.edge.runtime.journal_lines import JournalReading, event_line
from shared.contracts.call_event_json import written
from tests.services.accounting.calls import T0, answered_call, failed, started


async def test_migrating_twice_changes_nothing(record_store: RecordStore) -> None:
    assert await record_store.migrate() == LATEST
    async with record_store.engine.connect() as connection:
        versions = (await connection.execute(select(schema_version.c.version))).scalars().all()
    assert versions == [LATEST]


async def test_a_database_newer_than_the_code_is_refused(record_store: RecordStore) -> None:
    async with record_store.engine.begin() as connection:
        await connection.execute(schema_version.update().values(version=LATEST + 1))
    with pytest.raises(RuntimeError, match="newer than this code"):
        await record_store.migrate()


async def test_an_answered_call_is_one_complete_record(record_store: RecordStore) -> None:
    events = answered_call()
    versions = []
    for event in events:
        applied = await record_store.apply(event)
        assert not applied.duplicate
        versions += [stored.version for stored in applied.records]
    (last,) = applied.records
    assert last.record == fold_call(events)[0]
    assert last.record.state == "complete"
    assert versions == list(range(1, len(events) + 1))


async def test_a_duplicate_changes_nothing(record_store: RecordStore) -> None:
    events = answered_call()
    for event in events:
        await record_store.apply(event)
    again = await record_store.apply(events[-1])
    assert again.duplicate
    (stored,) = again.records
    assert (stored.changed, stored.version) == (False, len(events))
    async with record_store.engine.connect() as connection:
        count = (await connection.execute(select(call_events.c.id))).all()
    assert len(count) == len(events)


async def test_events_an_edge_published_again_from_its_outbox_change_nothing(
    record_store: RecordStore,
) -> None:
    """An edge that died before the broker confirmed publishes its journal again on restart:
    the events as read back from the journal's lines are duplicates of the stored ones."""
    events = answered_call()
    await record_store.apply_many(events)
    before = await stored_records(record_store)
    reading = JournalReading()
    reading.read(
        b"".join(event_line(n, event, written(event)[1]) for n, event in enumerate(events, 1)),
        "journal",
    )
    again = await record_store.apply_many([event for _, event in reading.pending()])
    assert [applied.duplicate for applied in again] == [True] * len(events)
    assert not any(stored.changed for applied in again for stored in applied.records)
    assert await stored_records(record_store) == before


async def test_events_in_any_order_give_the_same_record(record_store: RecordStore) -> None:
    events = answered_call()
    shuffled = random.Random(7).sample(events, len(events))
    for event in reversed(shuffled):
        await record_store.apply(event)
    rows = await stored_records(record_store)
    assert rows == [(fold_call(events)[0].model_dump_json(),)]


async def test_concurrent_writers_agree(accounting_url: str, record_store: RecordStore) -> None:
    """Two stores (two instances) applying every event of 20 calls, twice, all at once."""
    other = RecordStore(open_engine(database_url(accounting_url, "")))
    calls = [answered_call(f"c{n}") for n in range(20)]
    work = [event for events in calls for event in events]
    stores = [record_store, other]
    try:
        await asyncio.gather(*(stores[i % 2].apply(event) for i, event in enumerate(work * 2)))
    finally:
        await other.close()
    rows = await stored_records(record_store)
    expected = sorted(fold_call(events)[0].model_dump_json() for events in calls)
    assert sorted(row[0] for row in rows) == expected


async def test_a_bye_before_its_call_waits_for_it(record_store: RecordStore) -> None:
    *rest, bye = answered_call()
    assert (await record_store.apply(bye)).records == ()
    for event in rest:
        await record_store.apply(event)
    assert (await stored_records(record_store)) == [(fold_call([*rest, bye])[0].model_dump_json(),)]


async def test_a_stale_call_is_closed_once_and_a_late_bye_reopens_nothing(
    record_store: RecordStore,
) -> None:
    *talking, bye = answered_call()
    for event in talking:
        await record_store.apply(event)
    await record_store.apply(started("other", at=T0 + 5000))
    assert await record_store.stale(T0 + 100) == [("c1", "ft")]
    closed = await record_store.close_timed_out("c1", "ft", T0 + 20000)
    assert closed.records[0].record.disposition == "timeout"
    again = await record_store.close_timed_out("c1", "ft", T0 + 30000)
    assert again.duplicate
    assert not again.records[0].changed
    assert await record_store.stale(T0 + 100) == []
    late = await record_store.apply(bye)
    assert late.records[0].record.disposition == "answered"
    assert late.records[0].version == closed.records[0].version + 1


async def test_counts_by_state(record_store: RecordStore) -> None:
    await record_store.apply(started("a"))
    await record_store.apply(started("b"))
    await record_store.apply(failed("b"))
    assert await record_store.counts() == {"open": 1, "complete": 1}


async def stored_records(store: RecordStore) -> list[tuple[str]]:
    async with store.engine.connect() as connection:
        rows = await connection.execute(select(cdrs.c.record).order_by(cdrs.c.call_id))
        return [(row.record,) for row in rows]


def test_database_urls() -> None:
    assert database_url(None, "/data") == "sqlite+aiosqlite:////data/accounting.sqlite3"
    assert database_url("postgresql://u:p@h/db", "x") == "postgresql+asyncpg://u:p@h/db"
    assert database_url("sqlite:///f.db", "x") == "sqlite+aiosqlite:///f.db"


async def test_sqlite_files_use_wal(tmp_path: object) -> None:
    engine = open_engine(f"sqlite+aiosqlite:///{tmp_path}/a/b.sqlite3")
    async with engine.connect() as connection:
        mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
    await engine.dispose()
    assert mode == "wal"


async def test_a_version_1_database_gains_the_peer_column_and_keeps_its_records(
    record_store: RecordStore,
) -> None:
    """Schema step 2 on a database made before it: the column and its index added, the
    records there kept (their peer empty), a new call's peer written and filtered on."""
    await record_store.apply_many([started("before"), failed("before")])
    async with record_store.engine.begin() as connection:  # back to version 1's shape
        await connection.execute(text("DROP INDEX cdrs_peer"))
        await connection.execute(text("ALTER TABLE cdrs DROP COLUMN peer"))
        await connection.execute(schema_version.update().values(version=1))
    assert await record_store.migrate() == 1
    await record_store.apply_many([started("after", peer="carrier-x"), failed("after")])
    queries = RecordQueries(record_store.engine)
    by_peer = await queries.page(Filters(peer="carrier-x"), None, 10)
    assert [(record.call_id, record.peer) for record, _ in by_peer.records] == [
        ("after", "carrier-x")
    ]
    everything = await queries.page(Filters(), None, 10)
    assert sorted(record.call_id for record, _ in everything.records) == ["after", "before"]
