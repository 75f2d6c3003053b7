"""The ``registrar.…`` events: what an edge's location cache needs to mirror Redis.

``registrar.binding.added|refreshed|removed|expired`` carry the whole
:class:`~services.registrar.model.Location` (AoR, contact, expiry time, q,
path, received, edge instance...), so a cache applies them without reading
Redis; on a ``seq`` gap it drops the AoRs it holds and reloads on a miss.
``registrar.domain.added|removed`` announce the local domains.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from services.registrar.model import Location
from shared.bus import Event

REGISTRAR_EVENTS = "registrar.#"

RemovalCause = Literal["unregistered", "api"]


class BindingEvent(Event):
    """Base of the four binding events; ``binding`` is the state after the change."""

    binding: Location


class BindingAdded(BindingEvent):
    routing_key: ClassVar[str] = "registrar.binding.added"


class BindingRefreshed(BindingEvent):
    routing_key: ClassVar[str] = "registrar.binding.refreshed"


class BindingRemoved(BindingEvent):
    """``cause``: ``unregistered`` (REGISTER with expires 0 or ``*``), ``api`` (DELETE)."""

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
