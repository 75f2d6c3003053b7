"""An event's AMQP properties built without aio-pika's message: the same bytes on the wire."""

from __future__ import annotations

import aio_pika
from pamqp import frame, header

from shared.bus.amqp_link import PERSISTENT, event_properties
from shared.bus.base import Envelope


def test_an_events_properties_marshal_as_its_aio_pika_message_does() -> None:
    envelope = Envelope(
        type="accounting.cdr.completed",
        schema_version=1,
        service="accounting",
        instance="accounting-1",
        ts=1.5,
        stream="accounting/accounting-1",
        seq=42,
        data={"version": 3},
    )
    body = envelope.to_bytes()
    message = aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=PERSISTENT,
        message_id="accounting/accounting-1#42",
    )
    wire = [
        frame.marshal(header.ContentHeader(0, len(body), properties), 1)
        for properties in (message.properties, event_properties(envelope))
    ]
    assert wire[0] == wire[1]
    assert event_properties(envelope).message_id == "accounting/accounting-1#42"
