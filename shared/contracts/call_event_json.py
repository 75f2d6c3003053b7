"""Call events written as JSON once, by the edge that saw them, and reused as they are.

Why: an edge worker writes every call event twice over, in its outbox journal's line
and in the ``edge.call.batch`` message that carries it, and per event the batch built a
model of its own and wrote the event's fields again (with a Python callback per item).
Here an event's fields are written once, as it is offered (`written`); the journal's
line and the batch's items are those bytes with a few constant ones around them
(`batch_json`), the same bytes a receiver of a `CallEventBatch` always read.

Compiled with the edge's hot path (`deploy.extensions.HOT`): seven events a call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, TypeGuard

import orjson
from orjson import dumps  # a global of this module: no attribute look-up on `orjson` per event
from pydantic import BaseModel

from shared.contracts.calls import CALL_EVENT_TYPES, CallEvent, WrittenCallEventBatch
from shared.contracts.model_json import nested_json
from shared.contracts.unvalidated import unvalidated

ITEM_HEADS: Final[dict[type[CallEvent], bytes]] = {
    kind: b'{"type":"%s","schema_version":%d,"data":' % (key.encode(), kind.schema_version)
    for key, kind in CALL_EVENT_TYPES.items()
}
"""What precedes an event's fields in a batch's item, by the event's type (a look-up by
the type's identity, cheaper than by its routing key, which is a class attribute)."""


def is_call_event(event: object) -> TypeGuard[CallEvent]:
    """``isinstance(event, CallEvent)``, asked of the table's types by identity first.

    Why: pydantic's models have an ``ABCMeta`` metaclass, so an ``isinstance`` against one
    runs ``ABCMeta.__instancecheck__`` (some 600 instructions, compiled or not), and the
    edge asked several of every call event: its driver whether it was a failure report or
    a protection state, the publisher's offer and its batching whether it was a call event.
    A type's look-up in `ITEM_HEADS` is a hash of its identity; an event of another kind
    (a few a second) pays the ``isinstance`` after it."""
    return type(event) in ITEM_HEADS or isinstance(event, CallEvent)


def written(event: CallEvent) -> tuple[CallEvent, bytes]:
    """The event and its fields as JSON: its ``__dict__``, which holds JSON types but for the
    answered event's legs (models, written as their fields by `nested_json`).

    Text that no JSON can hold, a lone surrogate (a Request-URI's ``%FF`` as
    `shared.sip.uri` unescapes it: the byte kept as U+DCFF), is written as that byte's
    %-escape (any other lone surrogate as U+FFFD), and the event returned is the one read
    from that JSON, written again: so its journal line, its batch and a message of its own
    all carry the same, where such an event used to raise out of the publisher's ``offer``.
    Raises for an event no JSON holds even so, or of a type `CALL_EVENT_TYPES` does not
    know (which no line or batch could name).
    """
    if type(event) not in ITEM_HEADS:
        raise ValueError(f"{type(event).__name__} is not a call event type of the table")
    try:
        return event, dumps(event.__dict__, default=nested_json)
    except orjson.JSONEncodeError:
        mended = type(event).model_validate_json(orjson.dumps(_mended(event.__dict__)))
        return mended, dumps(mended.__dict__, default=nested_json)


def _mended(value: object) -> object:
    """`value` with the lone surrogates of its text replaced (see `written`)."""
    if isinstance(value, str):
        return _SURROGATE.sub(_replacement, value)
    if isinstance(value, BaseModel):
        value = value.__dict__
    if isinstance(value, dict):
        return {key: _mended(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mended(item) for item in value]
    return value


_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")  # the regex reads the escapes


def _replacement(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"%{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else "\ufffd"


def batch_json(kinds: list[type[CallEvent]], written: list[bytes]) -> bytes:
    """The JSON array of a batch's items: each event's type (``kinds``) and its
    fields as `written` wrote them (``written``), in order; the bytes orjson would
    write for a `CallEventBatch`'s ``events``."""
    parts: list[bytes] = [b"["]
    for kind, data in zip(kinds, written, strict=True):
        parts.append(ITEM_HEADS[kind])
        parts.append(data)
        parts.append(b"},")
    parts[-1] = b"}]" if written else b"[]"
    return b"".join(parts)


def written_batch(kinds: list[type[CallEvent]], written: list[bytes]) -> WrittenCallEventBatch:
    """The batch of the events whose types are ``kinds`` and fields ``written``."""
    return unvalidated(WrittenCallEventBatch, events=batch_json(kinds, written), count=len(written))


def written_batch_of(events: Sequence[CallEvent]) -> WrittenCallEventBatch:
    """The batch of ``events``, each written here: for a bench or a test that publishes
    batches as an edge does."""
    return written_batch([type(event) for event in events], [written(e)[1] for e in events])
