"""Keyset pages and the CSV walk: every record once, in order, ties on the setup time included."""

from __future__ import annotations

from services.accounting.queries import Filters, RecordQueries, decode_cursor, encode_cursor
from services.accounting.store import RecordStore
from tests.services.accounting.calls import T0, failed, started


async def test_pages_and_walks_see_each_record_once(record_store: RecordStore) -> None:
    # Five calls set up in the same millisecond and three later: the key's tie-breaks matter.
    for n in range(5):
        await record_store.apply_many([started(f"tie-{n}"), failed(f"tie-{n}")])
    for n in range(3):
        await record_store.apply(started(f"late-{n}", at=T0 + 10 + n))
    queries = RecordQueries(record_store.engine)
    paged: list[str] = []
    cursor = None
    while True:
        page = await queries.page(Filters(), cursor, 3)
        paged += [record.call_id for record, _ in page.records]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    walked = [record.call_id async for record in queries.walk(Filters(), page_size=2)]
    assert paged == walked
    assert paged == ["late-2", "late-1", "late-0", "tie-4", "tie-3", "tie-2", "tie-1", "tie-0"]


async def test_the_window_and_summary_use_the_setup_time(record_store: RecordStore) -> None:
    await record_store.apply_many([started("early"), failed("early")])
    await record_store.apply_many([started("later", at=T0 + 100), failed("later", at=T0 + 101)])
    queries = RecordQueries(record_store.engine)
    window = Filters(since_ms=round((T0 + 50) * 1000), until_ms=round((T0 + 200) * 1000))
    page = await queries.page(window, None, 10)
    assert [record.call_id for record, _ in page.records] == ["later"]
    summary = await queries.summary(window, "disposition")
    assert summary == [
        {
            "disposition": "busy",
            "attempts": 1,
            "answered": 0,
            "asr": 0.0,
            "acd_seconds": 0.0,
            "minutes": 0.0,
        }
    ]


def test_a_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor((5, "a", "b"))) == (5, "a", "b")
