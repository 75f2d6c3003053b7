"""Decoding queue messages: what is refused, with which reason."""

from __future__ import annotations

import pytest

from services.accounting.events import BadEventError, decode, event_key
from shared.bus.memory import MemoryBroker, MemoryBus
from tests.services.accounting.calls import branch, started

BUS = MemoryBus(MemoryBroker(), "ns", "edge", "e1")


def test_a_call_event_decodes_and_keys_by_content() -> None:
    event = started()
    assert decode(BUS.envelope(event).to_bytes()) == event
    assert event_key(event) == event_key(started())
    assert event_key(event) != event_key(started(at=event.at + 0.001))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"call_id": "x" * 513}, "call_id longer than 512"),
        ({"from_tag": "t" * 600}, "from_tag longer than 512"),
        ({"at": -1.0}, "at is not a time"),
        ({"at": 1e12}, "at is not a time"),
    ],
)
def test_out_of_bounds_events_are_refused(data: dict[str, object], reason: str) -> None:
    envelope = BUS.envelope(started())
    bad = envelope.model_copy(update={"data": envelope.data | data})
    with pytest.raises(BadEventError, match=reason):
        decode(bad.to_bytes())


def test_a_branch_sent_at_must_be_a_time() -> None:
    body = BUS.envelope(branch()).to_bytes().replace(b'"sent_at":', b'"sent_at":1e300,"x":')
    with pytest.raises(BadEventError, match="sent_at is not a time"):
        decode(body)


def test_an_event_of_another_service_is_refused() -> None:
    envelope = BUS.envelope(started()).model_copy(update={"type": "edge.call.exploded"})
    with pytest.raises(BadEventError, match=r"unknown event type 'edge\.call\.exploded'"):
        decode(envelope.to_bytes())
