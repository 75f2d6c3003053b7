"""Decoding queue messages, single events and batches: what is refused, with which reason."""

from __future__ import annotations

import orjson
import pytest

from services.accounting.events import (
    BadEventError,
    decode,
    decode_step_by_step,
    event_data,
    event_key,
    load,
)
from shared.bus.base import Envelope
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.call_event_json import written_batch_of
from shared.contracts.calls import (
    ANSWERED_B2BUA,
    ANSWERED_LEGS,
    MAX_BATCH_EVENTS,
    STARTED_MODE,
    STARTED_PEER,
    CallAnswered,
    CallEvent,
    CallStarted,
)
from tests.services.accounting.calls import (
    answered_call,
    branch,
    cancelled,
    failed,
    started,
    with_legs,
)

BUS = MemoryBus(MemoryBroker(), "ns", "edge", "e1")


def test_a_call_event_decodes_and_keys_by_content() -> None:
    event = started()
    assert decode(BUS.envelope(event).to_bytes()) == [event]
    assert event_key(event) == event_key(started())
    assert event_key(event) != event_key(started(at=event.at + 0.001))


@pytest.mark.parametrize(
    "event",
    [
        *answered_call(),
        *[e for e in with_legs(answered_call()) if isinstance(e, CallAnswered)],
        started(peer="carrier-x"),
        started(mode="b2bua"),
        started(peer="carrier-x", mode="b2bua"),
        answered_call()[4].model_copy(update={"b2bua_leg_call_id": "leg-b"}),
        failed(),
        failed(origin="edge", cause="unrouted", status=404),
        cancelled(),
    ],
    ids=lambda event: event.routing_key,
)
def test_the_one_pass_read_gives_the_event_the_step_by_step_read_gives(event: CallEvent) -> None:
    body = BUS.envelope(event).to_bytes()
    assert decode(body) == decode_step_by_step(body) == [event]
    assert type(decode(body)[0]) is type(event)
    # An older edge's answer without legs, a start without a peer, a proxied call's start and
    # answer (no B2BUA fields) are stored as they were: their keys must not change.
    added_later: set[str] = set()
    if isinstance(event, CallAnswered):
        added_later |= ANSWERED_LEGS if event.caller_leg is None else set()
        added_later |= ANSWERED_B2BUA if event.b2bua_leg_call_id is None else set()
    if isinstance(event, CallStarted):
        added_later |= STARTED_PEER if event.peer is None else set()
        added_later |= STARTED_MODE if event.mode is None else set()
    fields = event.model_dump(mode="json", exclude=added_later)
    canonical = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    assert event_data(event) == canonical.decode()
    assert load(event.routing_key, event_data(event)) == event


def test_keys_stay_those_stored_before() -> None:
    """A redelivered event must find its stored copy: the key is part of the stored data."""
    keys = [event_key(event)[:16] for event in answered_call()]
    assert keys == [
        "bd3e6cbd5b0e583e",
        "31e9085c9f52ed5f",
        "1df92703d263db5a",
        "5ab9ab020e9076cd",
        "2d935d35a7905cba",
        "8a25f3d8dbbb352f",
        "9172983923b25cb5",
    ]


def test_a_known_type_of_another_schema_version_is_refused() -> None:
    envelope = BUS.envelope(started()).model_copy(update={"schema_version": 2})
    with pytest.raises(BadEventError, match=r"edge\.call\.started schema version 2 is not the 1"):
        decode(envelope.to_bytes())


def test_data_that_does_not_fit_is_refused_naming_the_field() -> None:
    envelope = BUS.envelope(started())
    bad = envelope.model_copy(update={"data": {**envelope.data, "caller": 7}})
    with pytest.raises(BadEventError, match=r"malformed edge\.call\.started: caller: "):
        decode(bad.to_bytes())


def test_a_body_that_is_not_an_envelope_is_refused() -> None:
    with pytest.raises(BadEventError, match="not an event envelope: "):
        decode(b'{"type": "edge.call.started"}')


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


def sent(events: list[CallEvent]) -> Envelope:
    """The envelope of a batch of `events` as an edge sends it, read back (its items as dicts)."""
    return Envelope.from_bytes(BUS.envelope(written_batch_of(events)).to_bytes())


def batch_body(
    events: list[CallEvent], edit: dict[str, object] | None = None, at: int = 0
) -> bytes:
    """An ``edge.call.batch`` message of `events`, the data of event `at` updated by `edit`."""
    envelope = sent(events)
    if edit is not None:
        items = [dict(item) for item in envelope.data["events"]]
        items[at] = {**items[at], "data": {**items[at]["data"], **edit}}
        envelope = envelope.model_copy(update={"data": {"events": items}})
    return envelope.to_bytes()


def test_a_batch_decodes_to_its_events_in_order_both_ways() -> None:
    events = [*answered_call(), failed(), cancelled()]
    body = batch_body(events)
    assert decode(body) == decode_step_by_step(body) == events
    assert [type(event) for event in decode(body)] == [type(event) for event in events]
    assert decode(batch_body([])) == []


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({"caller": 7}, r"event 1 of edge\.call\.batch: malformed edge\.call\.started: caller: "),
        ({"at": 1e12}, r"event 1 of edge\.call\.batch: .*at is not a time"),
        ({"call_id": "x" * 513}, r"event 1 of edge\.call\.batch: .*call_id longer than 512"),
    ],
)
def test_a_batch_with_one_bad_event_is_refused_whole_naming_it(
    edit: dict[str, object], reason: str
) -> None:
    with pytest.raises(BadEventError, match=reason):
        decode(batch_body([cancelled(), started(), cancelled()], edit, at=1))


def test_a_batch_of_an_unknown_event_type_or_version_or_too_long_is_refused() -> None:
    envelope = sent([started()])
    item = dict(envelope.data["events"][0])
    unknown = envelope.model_copy(update={"data": {"events": [{**item, "type": "edge.x"}]}})
    with pytest.raises(BadEventError, match=r"event 0 of edge\.call\.batch: unknown event type"):
        decode(unknown.to_bytes())
    version = envelope.model_copy(update={"data": {"events": [{**item, "schema_version": 9}]}})
    with pytest.raises(BadEventError, match="schema version 9 is not the 1"):
        decode(version.to_bytes())
    batch_version = envelope.model_copy(update={"schema_version": 2})
    with pytest.raises(BadEventError, match=r"edge\.call\.batch schema version 2 is not the 1"):
        decode(batch_version.to_bytes())
    long = envelope.model_copy(update={"data": {"events": [item] * (MAX_BATCH_EVENTS + 1)}})
    with pytest.raises(BadEventError, match=r"malformed edge\.call\.batch: events: "):
        decode(long.to_bytes())
