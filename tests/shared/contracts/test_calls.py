"""A batch of call events as the edge sends it: each event written once, read as pydantic reads
a `CallEventBatch`."""

from __future__ import annotations

from typing import ClassVar

import orjson
import pytest

from shared.bus.base import Envelope
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.call_event_json import (
    ITEM_HEADS,
    batch_json,
    is_call_event,
    written,
    written_batch,
    written_batch_of,
)
from shared.contracts.calls import (
    CALL_EVENT_TYPES,
    CallAnswered,
    CallCancelled,
    CallEvent,
    CallEventBatch,
    DialogLeg,
)
from shared.contracts.model_json import nested_json
from shared.contracts.unvalidated import unvalidated
from tests.services.accounting.calls import (
    answered_call,
    cancelled,
    failed,
    legs,
    started,
    with_legs,
)

BUS = MemoryBus(MemoryBroker(), "ns", "edge", "e1")


def test_a_written_batch_is_the_json_of_its_events_and_reads_back_as_a_batch_of_them() -> None:
    events = [*with_legs(answered_call()), failed(), cancelled()]
    written = written_batch_of(events)
    assert written.count == len(events)
    items = [
        {"type": e.routing_key, "schema_version": e.schema_version, "data": e.__dict__}
        for e in events
    ]
    assert written.events == orjson.dumps(items, default=nested_json)  # byte for byte
    envelope = Envelope.from_bytes(BUS.envelope(written).to_bytes())
    assert envelope.type == CallEventBatch.routing_key
    assert envelope.schema_version == CallEventBatch.schema_version
    dumped = [
        {
            "type": e.routing_key,
            "schema_version": e.schema_version,
            "data": e.model_dump(mode="json"),
        }
        for e in events
    ]
    assert envelope.data == {"events": dumped}
    read = envelope.payload(CallEventBatch)
    kinds = [CALL_EVENT_TYPES[item.type] for item in read.events]
    assert [
        kind.model_validate(item.data) for kind, item in zip(kinds, read.events, strict=True)
    ] == events
    assert any(isinstance(e, CallAnswered) and e.caller_leg for e in events)  # a nested model too


def test_an_events_json_is_its_fields_and_a_batch_of_none_is_an_empty_array() -> None:
    event = with_legs(answered_call())[-1]
    assert orjson.loads(written(event)[1]) == event.model_dump(mode="json")
    assert orjson.loads(batch_json([], [])) == []
    assert orjson.loads(BUS.envelope(written_batch([], [])).to_bytes())["data"] == {"events": []}
    with pytest.raises(ValueError):
        batch_json([type(event)], [])  # one kind per event, no more, no less


def test_an_event_whose_text_no_json_holds_is_written_mended_and_comes_back_so() -> None:
    """A Request-URI's ``%FF`` unescaped is U+DCFF, a lone surrogate: written as ``%FF`` (any
    other lone surrogate as U+FFFD), in the event's fields and its legs' alike, and the event
    returned is that one read back; an event JSON holds comes back as itself."""
    event = started(callee_dialled="\udcff1555", callee="\ud800")
    clean = started()
    assert written(clean)[0] is clean
    mended, data = written(event)
    assert (mended.callee_dialled, mended.callee) == ("%FF1555", "\ufffd")  # type: ignore[attr-defined]
    assert orjson.loads(data) == mended.model_dump(mode="json")
    assert mended == started(callee_dialled="%FF1555", callee="\ufffd")
    [answered] = [e for e in with_legs(answered_call()) if isinstance(e, CallAnswered)]
    assert isinstance(answered, CallAnswered) and answered.callee_leg is not None
    leg = answered.callee_leg.model_copy(update={"target": "sip:\udcfe@gw", "routes": ("\udc80",)})
    mended, data = written(answered.model_copy(update={"callee_leg": leg}))
    assert isinstance(mended, CallAnswered) and mended.callee_leg is not None
    assert (mended.callee_leg.target, mended.callee_leg.routes) == ("sip:%FE@gw", ("%80",))
    assert orjson.loads(batch_json([type(mended)], [data]))[0]["data"] == orjson.loads(data)


def test_a_mended_event_is_written_as_it_reads_back_and_a_stranger_type_is_refused() -> None:
    """Built unvalidated (as the proxy core builds them) with an integer time, the event read
    back from its mended JSON has a float: the bytes are those of the event returned. A call
    event type the table does not know (as the accounting service's own) is refused, not
    written under a name no reader knows."""
    event = unvalidated(CallCancelled, **{**cancelled().__dict__, "at": 7, "call_id": "\udc80"})
    mended, data = written(event)
    assert mended.at == 7.0 and data == orjson.dumps(mended.__dict__)
    assert b'"at":7.0' in data
    with pytest.raises(ValueError, match="Stranger is not a call event type"):
        written(Stranger(call_id="c1", at=1.0, edge="accounting"))


class Stranger(CallEvent):
    """A call event of another's making (as the accounting service's timeout close is)."""

    routing_key: ClassVar[str] = "accounting.call.stranger"


def test_every_call_event_type_is_known_by_its_routing_key_to_the_writers() -> None:
    """A type the table forgot would make the edge's publisher raise on its first event (the
    accounting service's own subclass, a fold's timeout, is never published)."""
    assert set(ITEM_HEADS) == set(CALL_EVENT_TYPES.values())
    kinds = {cls for cls in _subclasses(CallEvent) if cls.__module__ == CallEvent.__module__}
    assert kinds == set(CALL_EVENT_TYPES.values())
    assert all(CALL_EVENT_TYPES[kind.routing_key] is kind for kind in kinds)


def test_a_call_event_is_told_by_its_type_and_a_strangers_as_isinstance_tells_it() -> None:
    """`is_call_event` is ``isinstance(event, CallEvent)``: the table's types by their identity,
    any other subclass (the stranger, which `written` then refuses) by the ``isinstance``."""
    for kind in CALL_EVENT_TYPES.values():
        assert is_call_event(kind.model_construct(call_id="c1", at=1.0, edge="e1"))
    assert is_call_event(Stranger(call_id="c1", at=1.0, edge="accounting"))
    assert not is_call_event(CallEventBatch(events=[]))
    assert not is_call_event(legs()["caller_leg"])
    assert not is_call_event(CallCancelled)  # the type itself is no event
    assert not is_call_event(None)


def _subclasses(cls: type[CallEvent]) -> list[type[CallEvent]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_an_envelope_writes_a_model_in_its_data_as_its_fields_and_refuses_a_stranger() -> None:
    leg = legs()["callee_leg"]
    assert isinstance(leg, DialogLeg)
    envelope = BUS.envelope(cancelled()).model_copy(update={"data": {"leg": leg}})
    assert orjson.loads(envelope.to_bytes())["data"] == {"leg": leg.model_dump(mode="json")}
    stranger = envelope.model_copy(update={"data": {"x": object()}})
    with pytest.raises(TypeError):
        Envelope.to_bytes(stranger)
