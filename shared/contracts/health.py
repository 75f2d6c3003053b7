"""The ``health.…`` events: target states and dispatcher sets, for the edges' caches.

``health.target.state`` goes out whenever a target's state changes (and when
an operator disables or enables it); ``health.target.removed`` when its
gateway or set member is gone. Edges key gateways by ``gateway_id`` and
dispatcher destinations by ``(set_id, address)``. ``health.dispatcher.*``
carry whole sets, so an edge can replace its copy without reading Redis.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from shared.contracts.event import Event
from shared.dispatcher.model import DispatcherSet

TargetStateName = Literal["up", "down", "probing", "disabled"]
TargetKind = Literal["gateway", "destination"]


class TargetState(Event):
    """One target's health; also the record kept in Redis and listed by ``GET /v1/targets``.

    ``since``, ``checked_at`` and ``until`` are Unix times; ``until`` is set
    while a 503 Retry-After holds the target down. ``rtt_ms`` is the last
    probe's round trip, ``srtt_ms`` its smoothed value (1/8 weight, as TCP).
    """

    routing_key: ClassVar[str] = "health.target.state"

    target: str
    kind: TargetKind
    address: str
    gateway_id: str | None = None
    set_id: str | None = None
    state: TargetStateName
    reason: str
    since: float
    checked_at: float | None = None
    rtt_ms: float | None = None
    srtt_ms: float | None = None
    until: float | None = None


class TargetRemoved(Event):
    routing_key: ClassVar[str] = "health.target.removed"

    target: str


class TargetOverridden(Event):
    """An operator disabled or enabled a target, or changed its policy; the prober reloads it."""

    routing_key: ClassVar[str] = "health.target.overridden"

    target: str


class DispatcherSetUpserted(Event):
    routing_key: ClassVar[str] = "health.dispatcher.upserted"

    set_id: str
    set: DispatcherSet


class DispatcherSetDeleted(Event):
    routing_key: ClassVar[str] = "health.dispatcher.deleted"

    set_id: str
