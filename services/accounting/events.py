"""From a bus message to a typed call event, and the key that stores it once.

A message that is not an envelope, names an unknown type or a schema version
this code does not read, or whose data does not fit its type raises
:class:`BadEventError` with a reason for the dead queue: retrying would fail the
same way, and the queue must go on.
"""

from __future__ import annotations

import hashlib
import math

import orjson
from pydantic import ValidationError

from services.accounting.fold import TimeoutClose
from shared.bus import Envelope
from shared.contracts.calls import (
    BranchTried,
    CallAnswered,
    CallCancelled,
    CallEnded,
    CallEvent,
    CallFailed,
    CallRinging,
    CallStarted,
    CallUpdated,
)

CALL_EVENTS: dict[str, type[CallEvent]] = {
    kind.routing_key: kind
    for kind in (
        CallStarted,
        BranchTried,
        CallRinging,
        CallAnswered,
        CallFailed,
        CallCancelled,
        CallEnded,
        CallUpdated,
    )
}
STORED_EVENTS: dict[str, type[CallEvent]] = {
    **CALL_EVENTS,
    TimeoutClose.routing_key: TimeoutClose,
}


MAX_ID_CHARS = 512
MAX_TIME = 1e11
"""Unix seconds beyond year 5000: not a time an edge took."""


class BadEventError(ValueError):
    """The message can never be applied; its text says why (the dead-letter reason)."""


def decode(body: bytes) -> CallEvent:
    """The typed call event of a message body; :class:`BadEventError` when there is none."""
    try:
        envelope = Envelope.from_bytes(body)
    except ValidationError as error:
        raise BadEventError(f"not an event envelope: {first_error(error)}") from None
    kind = CALL_EVENTS.get(envelope.type)
    if kind is None:
        raise BadEventError(f"unknown event type {envelope.type!r}")
    if envelope.schema_version != kind.schema_version:
        raise BadEventError(
            f"{envelope.type} schema version {envelope.schema_version} is not the "
            f"{kind.schema_version} this service reads"
        )
    try:
        event = envelope.payload(kind)
    except ValidationError as error:
        raise BadEventError(f"malformed {envelope.type}: {first_error(error)}") from None
    check_bounds(envelope.type, event)
    return event


def check_bounds(kind: str, event: CallEvent) -> None:
    """Refuse what no edge sends and the database would choke on: endless ids, times not finite."""
    for name in ("call_id", "from_tag", "to_tag"):
        text: str = getattr(event, name, "")
        if len(text) > MAX_ID_CHARS:
            raise BadEventError(f"malformed {kind}: {name} longer than {MAX_ID_CHARS} characters")
    for name in ("at", "sent_at"):
        moment: float = getattr(event, name, 0.0)
        if not math.isfinite(moment) or not 0 <= moment < MAX_TIME:
            raise BadEventError(f"malformed {kind}: {name} is not a time")


def first_error(error: ValidationError) -> str:
    """The first problem, without the input (it may be long or hold what it should not)."""
    detail = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in detail["loc"])
    return f"{where}: {detail['msg']}" if where else str(detail["msg"])


def event_data(event: CallEvent) -> str:
    """The stored form of an event's data: canonical JSON, keys sorted."""
    return orjson.dumps(event.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS).decode()


def event_key(event: CallEvent) -> str:
    """Unique per distinct event: a redelivered or republished event has the same key."""
    digest = hashlib.sha256(f"{event.routing_key}\n{event_data(event)}".encode())
    return digest.hexdigest()


def load(kind: str, data: str) -> CallEvent | None:
    """A stored event back as its type; ``None`` for a type this code no longer folds."""
    event_type = STORED_EVENTS.get(kind)
    return None if event_type is None else event_type.model_validate_json(data)
