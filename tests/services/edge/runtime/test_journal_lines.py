"""The outbox journal's lines: an event read back equals the one journaled (the same key in
the accounting service's store), and whatever else a file holds is skipped, never raised."""

from __future__ import annotations

from services.accounting.events import event_key
from services.edge.proxy.call_events import CallEvents, CallNotes
from services.edge.runtime.journal_lines import JournalReading, event_line, mark_line
from shared.contracts.call_event_json import written
from shared.contracts.calls import CallAnswered, CallEvent, CallStarted
from tests.services.accounting.calls import answered_call, with_legs


def line(seq: int, event: CallEvent) -> bytes:
    """The journal's line of ``event`` under ``seq``, its fields written as the publisher does."""
    return event_line(seq, event, written(event)[1])


def started(n: int) -> CallEvent:
    return CallStarted(
        call_id=f"call-{n}",
        at=1_764_000_000.123 + n / 1000,
        edge="edge-a",
        from_tag="a1",
        caller="alice",
        callee_dialled="+1 555",
        callee="1555",
        source="127.0.0.1:5060",
        transport="udp",
        rule=None,
    )


def test_an_event_read_back_is_the_event_journaled_and_keeps_its_key() -> None:
    cancelled = CallEvents("edge-a").cancelled(CallNotes("call-9", "a9"), 12.5).event
    assert isinstance(cancelled, CallEvent)  # built as the proxy core builds it, unvalidated
    reading = JournalReading()
    reading.read(line(1, started(1)) + line(2, cancelled), "segment")
    assert reading.pending() == [(1, started(1)), (2, cancelled)]
    assert [event_key(event) for _, event in reading.pending()] == [
        event_key(started(1)),
        event_key(cancelled),
    ]
    assert (reading.skipped, reading.last_seq) == (0, 2)


def test_an_answered_event_with_its_legs_reads_back_equal() -> None:
    [answered] = [e for e in with_legs(answered_call()) if isinstance(e, CallAnswered)]
    reading = JournalReading()
    reading.read(line(1, answered), "segment")
    assert reading.pending() == [(1, answered)]
    assert event_key(reading.pending()[0][1]) == event_key(answered)


def test_marks_settle_what_is_below_them_in_any_segment() -> None:
    reading = JournalReading()
    reading.read(b"".join(line(n, started(n)) for n in (1, 2, 3)), "first")
    reading.read(mark_line(2) + line(4, started(4)) + mark_line(1), "second")
    assert reading.watermark == 2
    assert [seq for seq, _ in reading.pending()] == [3, 4]


def test_a_torn_last_line_is_skipped_and_named() -> None:
    second = line(2, started(2))
    reading = JournalReading()
    reading.read(line(1, started(1)) + second[:40], "00000000000000000001.journal")
    assert [seq for seq, _ in reading.pending()] == [1]
    assert reading.skipped == 1
    assert reading.first_problem == "00000000000000000001.journal: a torn last line of 40 bytes"


def test_garbage_is_skipped_line_by_line_without_echoing_it() -> None:
    secret = b"password=hunter2"
    lines = [
        b"\x00\xff" + secret,
        b"[1, 2]",
        b'{"c": "x"}',
        b'{"c": true}',
        b'{"s": 0, "t": "edge.call.started", "v": 1, "d": {}}',
        b'{"s": 7, "t": "edge.call.nope", "v": 1, "d": {}}',
        b'{"s": 7, "t": "edge.call.started", "v": 99, "d": {}}',
        b'{"s": 7, "t": "edge.call.started", "v": 1, "d": {"call_id": 5}}',
        b'{"s": 7, "t": "edge.call.started", "v": 1, "d": "' + secret + b'"}',
        line(8, started(8)).rstrip(b"\n"),
    ]
    reading = JournalReading()
    reading.read(b"\n".join(lines) + b"\n", "seg")
    assert [seq for seq, _ in reading.pending()] == [8]
    assert reading.skipped == len(lines) - 1
    assert reading.first_problem == "seg line 1: not JSON"
    assert reading.watermark == 0


def test_every_reason_says_what_is_wrong() -> None:
    cases = {
        b"[]": "not a journal record",
        b'{"c": 1.5}': "a mark without a sequence number",
        b'{"s": -1}': "an event without a sequence number",
        b'{"s": 1, "t": 5}': "not a call event type",
        b'{"s": 1, "t": "edge.call.ended", "v": 2}': (
            "edge.call.ended of a schema version this code does not read"
        ),
        b'{"s": 1, "t": "edge.call.ended", "v": 1, "d": {}}': "a malformed edge.call.ended",
    }
    for line, reason in cases.items():
        reading = JournalReading()
        reading.read(line + b"\n", "s")
        assert reading.first_problem == f"s line 1: {reason}", line
