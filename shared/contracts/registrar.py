"""The registrar's bus contracts: its ``registrar.…`` events and the REGISTER work queue.

The events are what an edge's location cache needs to mirror Redis:
``registrar.binding.added|refreshed|removed|expired`` carry the whole
:class:`~shared.registrar.model.Location` (AoR, contact, expiry time, q,
path, received, edge instance...), so a cache applies them without reading
Redis; on a ``seq`` gap it drops the AoRs it holds and reloads on a miss.
``registrar.domain.added|removed`` announce the local domains.

The edge → registrar work queue is described where it is defined, below.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.event import Event
from shared.registrar.model import Location

REGISTRAR_EVENTS = "registrar.#"

RemovalCause = Literal["unregistered", "api", "unreachable"]


class BindingEvent(Event):
    """Base of the four binding events; ``binding`` is the state after the change."""

    binding: Location


class BindingAdded(BindingEvent):
    routing_key: ClassVar[str] = "registrar.binding.added"


class BindingRefreshed(BindingEvent):
    routing_key: ClassVar[str] = "registrar.binding.refreshed"


class BindingRemoved(BindingEvent):
    """``cause``: ``unregistered`` (REGISTER with expires 0 or ``*``), ``api`` (DELETE),
    ``unreachable`` (the edge holding its flow got no answer to its keepalives)."""

    routing_key: ClassVar[str] = "registrar.binding.removed"

    cause: RemovalCause


class BindingExpired(BindingEvent):
    routing_key: ClassVar[str] = "registrar.binding.expired"


class DomainEvent(Event):
    domain: str


class DomainAdded(DomainEvent):
    """The first subscriber of ``domain`` was created: it is now a local domain."""

    routing_key: ClassVar[str] = "registrar.domain.added"


class DomainRemoved(DomainEvent):
    """The last subscriber of ``domain`` was deleted."""

    routing_key: ClassVar[str] = "registrar.domain.removed"


# The edge → registrar interface: one REGISTER over work queue ``registrar.register``.
#
# An edge sends each REGISTER it receives with
# ``await bus.request(REGISTER_QUEUE, RegisterRequest(...).to_bytes())`` and
# sends the response bytes of the :class:`RegisterReply` back to the phone
# (through its server transaction, as for any response it originates). Any
# registrar instance may take any request: nothing in a REGISTER exchange is
# tied to one instance. Both models are JSON; the SIP bytes travel base64.

REGISTER_QUEUE: Final = "registrar.register"
REGISTER_TIMEOUT: Final = 5.0
"""Seconds an edge should wait for the reply before answering the phone 500 itself."""


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_bytes="base64", val_json_bytes="base64")

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self)

    @classmethod
    def from_bytes(cls, body: bytes) -> _Message:
        return cls.model_validate_json(body)


class RegisterRequest(_Message):
    """A REGISTER as the edge received it, and how it reached the edge.

    ``sip``: the message bytes exactly as received. ``source_host``/``source_port``:
    the peer address the datagram or connection came from (becomes ``received``);
    ``transport``: ``udp`` or ``tcp``. ``edge``: the edge's instance name
    (``CALLMESH_INSTANCE``), ``edge_address``: a SIP URI reaching that edge
    (e.g. ``sip:192.0.2.10:5060;transport=tcp``), ``connection_id``: the
    stream connection it arrived on, if any.
    """

    sip: bytes
    source_host: str = Field(min_length=1)
    source_port: int = Field(ge=0, le=65535)
    transport: str = Field(pattern=r"^[a-z]+$")
    edge: str = Field(min_length=1)
    edge_address: str | None = None
    connection_id: int | None = None


UNREACHABLE_QUEUE: Final = "registrar.unreachable"
"""Work queue of :class:`UnreachableBinding` reports, sent fire-and-forget by the edges."""


class UnreachableBinding(_Message):
    """The edge holding a binding's flow got no answer to its keepalives for its timeout.

    ``received`` and ``edge`` are the binding's as the edge knew them: the
    registrar removes the binding (cause ``unreachable``) only if they still
    match, so a phone that registered again from elsewhere meanwhile is kept.
    """

    aor: str = Field(min_length=1)
    contact: str = Field(min_length=1)
    received: str = Field(min_length=1)
    edge: str = Field(min_length=1)
    expires_at: float | None = None
    """The binding's expiry as the edge last heard it: a refresh queued ahead of the report
    moves it, and the refreshed binding is kept (None: not compared)."""


class FailedAuth(BaseModel):
    """Whose credentials the registrar found wrong (or who is no subscriber)."""

    model_config = ConfigDict(frozen=True)

    user: str
    realm: str


class RegisterReply(_Message):
    """The registrar's answer: ``sip`` is the complete response to send (401, 200, 423, ...).

    ``sip`` is None only when the request could not be answered at all (no
    usable Via): the edge then drops it, as it would a malformed request.
    ``failed_auth`` is set when ``sip`` is the 403 for wrong credentials: the
    edge counts the failure (``shared.protection``) before sending it.
    """

    sip: bytes | None
    failed_auth: FailedAuth | None = None
