"""The trace ring's bounds: a count of messages, and their bytes (every datagram is kept)."""

from __future__ import annotations

from services.edge.runtime.capture import capture_of
from services.edge.runtime.trace_ring import TraceEntry, TraceRing
from shared.hep.settings import CaptureSettings
from shared.settings import Settings

JUNK = b"\xff" * 65000  # what anyone may send in one datagram: kept before any check


def entry(data: bytes) -> TraceEntry:
    return TraceEntry(0.0, "in", "udp", ("192.0.2.7", 5060), ("10.0.0.1", 5060), data)


def message(call_id: str) -> bytes:
    return f"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: {call_id}\r\n\r\n".encode()


def test_a_junk_flood_pins_no_more_than_the_byte_bound() -> None:
    """10,000 datagrams of 65 KB were all kept: 650 MB per worker, from any stranger."""
    ring = TraceRing(10000, max_bytes=1024 * 1024)
    ring.add(entry(message("before")))
    for _ in range(200):
        ring.add(entry(JUNK))
    assert ring.bytes <= 1024 * 1024
    assert ring.bytes == sum(len(kept.data) for kept in ring._entries)
    assert len(ring._entries) == 1024 * 1024 // len(JUNK)  # the newest that fit
    ring.add(entry(message("after")))
    assert [kept.data for kept in ring.of_call("after")] == [message("after")]
    assert ring.of_call("before") == []  # pushed out by the junk, as by any traffic


def test_the_count_bound_keeps_the_byte_count_right() -> None:
    ring = TraceRing(3)
    for n in range(10):
        ring.add(entry(message(f"c{n}")))
    assert len(ring._entries) == 3
    assert ring.bytes == sum(len(message(f"c{n}")) for n in range(7, 10))


def test_the_settings_give_the_ring_its_byte_bound() -> None:
    capture = capture_of(Settings(), CaptureSettings(trace_ring=5, trace_ring_bytes=1000))
    assert capture is not None and capture.ring is not None
    assert (capture.ring.size, capture.ring.max_bytes) == (5, 1000)
