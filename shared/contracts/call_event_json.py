"""Call events written as JSON once, by the edge that saw them, and reused as they are.

Why: an edge worker writes every call event twice over, in its outbox journal's line
and in the ``edge.call.batch`` message that carries it, and per event the batch built a
model of its own and wrote the event's fields again (with a Python callback per item).
Here an event's fields are written once, as it is offered (`event_json`); the journal's
line and the batch's items are those bytes with a few constant ones around them
(`batch_json`), the same bytes a receiver of a `CallEventBatch` always read.

Compiled with the edge's hot path (`deploy.extensions.HOT`): seven events a call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import orjson

from shared.contracts.calls import CALL_EVENT_TYPES, CallEvent, WrittenCallEventBatch
from shared.contracts.event import nested_json
from shared.contracts.unvalidated import unvalidated

ITEM_HEADS: Final[dict[str, bytes]] = {
    key: b'{"type":"%s","schema_version":%d,"data":' % (key.encode(), kind.schema_version)
    for key, kind in CALL_EVENT_TYPES.items()
}
"""What precedes an event's fields in a batch's item, by the event's routing key."""


def event_json(event: CallEvent) -> bytes:
    """The event's fields as JSON: its ``__dict__``, which holds JSON types but for the
    answered event's legs (models, written as their fields by `nested_json`)."""
    return orjson.dumps(event.__dict__, default=nested_json)


def batch_json(kinds: list[str], written: list[bytes]) -> bytes:
    """The JSON array of a batch's items: each event's routing key (``kinds``) and its
    fields as `event_json` wrote them (``written``), in order; the bytes orjson would
    write for a `CallEventBatch`'s ``events``."""
    parts: list[bytes] = [b"["]
    for kind, data in zip(kinds, written, strict=True):
        parts.append(ITEM_HEADS[kind])
        parts.append(data)
        parts.append(b"},")
    parts[-1] = b"}]" if written else b"[]"
    return b"".join(parts)


def batch(kinds: list[str], written: list[bytes]) -> WrittenCallEventBatch:
    """The batch of the events whose routing keys are ``kinds`` and fields ``written``."""
    return unvalidated(WrittenCallEventBatch, events=batch_json(kinds, written), count=len(written))


def batch_of(events: Sequence[CallEvent]) -> WrittenCallEventBatch:
    """The batch of ``events``, each written here: what a bench or a test that publishes
    as an edge does sends."""
    return batch([event.routing_key for event in events], [event_json(e) for e in events])
