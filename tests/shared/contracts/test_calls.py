"""A batch of call events is serialised once, when sent, to what pydantic would write."""

from __future__ import annotations

import orjson
import pytest

from shared.bus.base import Envelope
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.calls import CallAnswered, CallEventBatch, DialogLeg
from tests.services.accounting.calls import answered_call, cancelled, failed, legs, with_legs

BUS = MemoryBus(MemoryBroker(), "ns", "edge", "e1")


def test_a_batch_holds_its_events_fields_and_is_written_as_pydantic_writes_them() -> None:
    events = [*with_legs(answered_call()), failed(), cancelled()]
    batch = CallEventBatch.of(events)
    assert all(
        item.data is event.__dict__ for item, event in zip(batch.events, events, strict=True)
    )
    body = orjson.loads(BUS.envelope(batch).to_bytes())
    dumped = [
        {
            "type": e.routing_key,
            "schema_version": e.schema_version,
            "data": e.model_dump(mode="json"),
        }
        for e in events
    ]
    assert body["data"] == {"events": dumped} == batch.model_dump(mode="json")
    assert any(isinstance(e, CallAnswered) and e.caller_leg for e in events)  # a nested model too


def test_an_envelope_writes_a_model_in_its_data_as_its_fields_and_refuses_a_stranger() -> None:
    leg = legs()["callee_leg"]
    assert isinstance(leg, DialogLeg)
    envelope = BUS.envelope(cancelled()).model_copy(update={"data": {"leg": leg}})
    assert orjson.loads(envelope.to_bytes())["data"] == {"leg": leg.model_dump(mode="json")}
    stranger = envelope.model_copy(update={"data": {"x": object()}})
    with pytest.raises(TypeError):
        Envelope.to_bytes(stranger)
