"""Keyset pages and the CSV walk: every record once, in order, ties on the setup time included."""

from __future__ import annotations

from services.accounting.queries import (
    MAX_ANSWERS,
    Filters,
    RecordQueries,
    decode_cursor,
    encode_cursor,
)
from services.accounting.store import RecordStore
from shared.contracts.calls import CallAnswered
from tests.services.accounting.calls import T0, answered_call, failed, started


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


async def test_a_call_ids_answers_are_read_earliest_first_and_bounded(
    record_store: RecordStore,
) -> None:
    """2xxs any host can send naming an edge are answers too (one per dialog a second):
    the hang-up reads the earliest `MAX_ANSWERS`, which hold the call's real ones."""
    [real] = [e for e in answered_call() if isinstance(e, CallAnswered)]
    forged = [
        real.model_copy(update={"to_tag": f"f{n}", "at": real.at + 1 + n})
        for n in range(MAX_ANSWERS + 20)
    ]
    await record_store.apply_many([*answered_call(), *forged])
    answers = await RecordQueries(record_store.engine).answers("c1")
    assert len(answers) == MAX_ANSWERS
    assert answers[0] == real and answers[1].to_tag == "f0"
