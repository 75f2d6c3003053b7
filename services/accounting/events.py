"""From a bus message to a typed call event, and the key that stores it once.

A message that is not an envelope, names an unknown type or a schema version
this code does not read, or whose data does not fit its type raises
:class:`BadEventError` with a reason for the dead queue: retrying would fail the
same way, and the queue must go on.

Why one pass: every call costs the service seven events, so a good message
is read by a single validation of the whole body (:data:`TYPED`, one model per
event type told apart by ``type``) instead of an envelope and then its data.
Only a message that fails it is read again, step by step, to say why. A
message is one event or an ``edge.call.batch`` of them (what an edge under
load sends); a batch with one bad event is refused whole, its reason naming
the event.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import operator
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, TypeAdapter, ValidationError, create_model

from services.accounting.fold import TimeoutClose
from shared.bus import Envelope
from shared.contracts.calls import (
    ANSWERED_B2BUA,
    ANSWERED_LEGS,
    CALL_EVENT_TYPES,
    MAX_BATCH_EVENTS,
    STARTED_MODE,
    STARTED_PEER,
    CallAnswered,
    CallEvent,
    CallEventBatch,
    CallStarted,
)
from shared.contracts.model_json import nested_json

ADDED_LATER: dict[type[CallEvent], tuple[tuple[str, frozenset[str]], ...]] = {
    CallAnswered: (("caller_leg", ANSWERED_LEGS), ("b2bua_leg_call_id", ANSWERED_B2BUA)),
    CallStarted: (("peer", STARTED_PEER), ("mode", STARTED_MODE)),
}
"""Per event type, the groups of fields added after its first deployment, each with the one
that tells whether an event has them: an event whose teller is ``None`` (an older edge's, a
call without a peer, a proxied call) is stored without that group, so its key stays the one
stored before the fields were added and a redelivered copy is still one row."""

STORED_EVENTS: dict[str, type[CallEvent]] = {
    **CALL_EVENT_TYPES,
    TimeoutClose.routing_key: TimeoutClose,
}


def _envelope_fields() -> dict[str, Any]:
    return {name: (info.annotation, ...) for name, info in Envelope.model_fields.items()}


def _typed_envelope(kind: type[CallEvent]) -> Any:
    """The envelope of one event type, its ``data`` read as that type."""
    fields = _envelope_fields()
    fields["type"] = (Literal[kind.routing_key], ...)
    fields["data"] = (kind, ...)
    return create_model(f"{kind.__name__}Envelope", **fields)


def _typed_item(kind: type[CallEvent]) -> Any:
    """One event of a batch (its type, version and data), the data read as that type."""
    fields: dict[str, Any] = {
        "type": (Literal[kind.routing_key], ...),
        "schema_version": (int, ...),
        "data": (kind, ...),
    }
    return create_model(f"{kind.__name__}Item", **fields)


def _union(models: Any) -> Any:
    return Annotated[functools.reduce(operator.or_, models), Field(discriminator="type")]


def _typed_batch() -> Any:
    """The envelope of ``edge.call.batch``, each of its events read as the type it names."""
    items: Any = list[_union(map(_typed_item, CALL_EVENT_TYPES.values()))]  # type: ignore[misc]
    data = create_model("TypedCallEventBatch", events=(items, Field(max_length=MAX_BATCH_EVENTS)))
    fields = _envelope_fields()
    fields["type"] = (Literal[CallEventBatch.routing_key], ...)
    fields["data"] = (data, ...)
    return create_model("CallEventBatchEnvelope", **fields)


TYPED: TypeAdapter[Any] = TypeAdapter(
    _union([*map(_typed_envelope, CALL_EVENT_TYPES.values()), _typed_batch()])
)
"""A whole message body read at once: the envelope and its data as the type it names."""

BOUNDED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    kind: (
        tuple(name for name in ("call_id", "from_tag", "to_tag") if name in event.model_fields),
        tuple(name for name in ("at", "sent_at") if name in event.model_fields),
    )
    for kind, event in CALL_EVENT_TYPES.items()
}
"""Per type, its id fields and its time fields (what :func:`check_bounds` looks at)."""

MAX_ID_CHARS = 512
MAX_TIME = 1e11
"""Unix seconds beyond year 5000: not a time an edge took."""


class BadEventError(ValueError):
    """The message can never be applied; its text says why (the dead-letter reason)."""


def decode(body: bytes) -> list[CallEvent]:
    """The typed call events of a message body; :class:`BadEventError` when there are none."""
    try:
        typed = TYPED.validate_json(body)
    except ValidationError:
        return decode_step_by_step(body)  # raises, saying what is wrong
    if typed.type == CallEventBatch.routing_key:
        _check_version(typed.type, typed.schema_version, CallEventBatch.schema_version)
        events = []
        for n, item in enumerate(typed.data.events):
            with _in_batch(n):
                events.append(_checked(item.type, item.schema_version, item.data))
        return events
    return [_checked(typed.type, typed.schema_version, typed.data)]


def _checked(kind_name: str, version: int, event: CallEvent) -> CallEvent:
    _check_version(kind_name, version, type(event).schema_version)
    check_bounds(kind_name, event)
    return event


def _check_version(kind_name: str, version: int, read: int) -> None:
    if version != read:
        raise BadEventError(
            f"{kind_name} schema version {version} is not the {read} this service reads"
        )


@contextlib.contextmanager
def _in_batch(n: int) -> Iterator[None]:
    """Name the event of a batch a :class:`BadEventError` is about."""
    try:
        yield
    except BadEventError as error:
        raise BadEventError(f"event {n} of {CallEventBatch.routing_key}: {error}") from None


def decode_step_by_step(body: bytes) -> list[CallEvent]:
    """:func:`decode` the slow way: the envelope, its type and version, then its data.

    What a body that failed the one-pass read goes through, so that the
    reason names the first thing wrong.
    """
    try:
        envelope = Envelope.from_bytes(body)
    except ValidationError as error:
        raise BadEventError(f"not an event envelope: {first_error(error)}") from None
    if envelope.type != CallEventBatch.routing_key:
        return [_step_by_step(envelope.type, envelope.schema_version, envelope.data)]
    _check_version(envelope.type, envelope.schema_version, CallEventBatch.schema_version)
    try:
        batch = CallEventBatch.model_validate(envelope.data)
    except ValidationError as error:
        raise BadEventError(f"malformed {envelope.type}: {first_error(error)}") from None
    events = []
    for n, item in enumerate(batch.events):
        with _in_batch(n):
            events.append(_step_by_step(item.type, item.schema_version, item.data))
    return events


def _step_by_step(kind_name: str, version: int, data: dict[str, Any]) -> CallEvent:
    kind = CALL_EVENT_TYPES.get(kind_name)
    if kind is None:
        raise BadEventError(f"unknown event type {kind_name!r}")
    _check_version(kind_name, version, kind.schema_version)
    try:
        event = kind.model_validate(data)
    except ValidationError as error:
        raise BadEventError(f"malformed {kind_name}: {first_error(error)}") from None
    check_bounds(kind_name, event)
    return event


def check_bounds(kind: str, event: CallEvent) -> None:
    """Refuse what no edge sends and the database would choke on: endless ids, times not finite."""
    ids, times = BOUNDED[kind]
    for name in ids:
        text: str = getattr(event, name)
        if len(text) > MAX_ID_CHARS:
            raise BadEventError(f"malformed {kind}: {name} longer than {MAX_ID_CHARS} characters")
    for name in times:
        moment: float = getattr(event, name)
        if not math.isfinite(moment) or not 0 <= moment < MAX_TIME:
            raise BadEventError(f"malformed {kind}: {name} is not a time")


def first_error(error: ValidationError) -> str:
    """The first problem, without the input (it may be long or hold what it should not)."""
    detail = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in detail["loc"])
    return f"{where}: {detail['msg']}" if where else str(detail["msg"])


def event_data(event: CallEvent) -> str:
    """The stored form of an event's data: canonical JSON, keys sorted.

    A call event's fields are strings, numbers, booleans and ``None`` (a nested model, the
    answered event's legs, by `nested_json`), so its ``__dict__`` is what
    ``model_dump(mode="json")`` would build, without the copy.
    """
    data = event.__dict__
    for teller, fields in ADDED_LATER.get(type(event), ()):
        if data[teller] is None:
            data = {name: value for name, value in data.items() if name not in fields}
    return orjson.dumps(data, default=nested_json, option=orjson.OPT_SORT_KEYS).decode()


def event_key(event: CallEvent) -> str:
    """Unique per distinct event: a redelivered or republished event has the same key."""
    return key_of(event.routing_key, event_data(event))


def key_of(kind: str, data: str) -> str:
    """:func:`event_key` from the event's type and :func:`event_data`, already made."""
    return hashlib.sha256(f"{kind}\n{data}".encode()).hexdigest()


def load(kind: str, data: str) -> CallEvent | None:
    """A stored event back as its type; ``None`` for a type this code no longer folds."""
    event_type = STORED_EVENTS.get(kind)
    return None if event_type is None else event_type.model_validate_json(data)
