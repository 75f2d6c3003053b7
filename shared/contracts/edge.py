"""The ``edge.…`` events other services act on: what an edge saw happen to a target.

The health service consumes :class:`GatewayFailed` and :class:`DestinationFailed`
so that a gateway or dispatcher destination the edges see failing is probed at
once instead of at its next round. They live here, not in the edge, so both
sides share one definition without importing each other.
"""

from __future__ import annotations

from typing import ClassVar, Final, Literal

from shared.contracts.event import Event

FailureReason = Literal["timeout", "status", "transport"]


class TargetFailed(Event):
    """What every failure report carries, whatever the target.

    ``reason``: ``timeout`` (no final answer in time; ``status`` 408 made
    locally), ``status`` (it answered 5xx itself), ``transport`` (the request
    could not be sent; ``status`` 503 made locally). ``retry_after``: seconds
    from the target's Retry-After, if any. ``method`` and ``call_id`` correlate
    with the edge's logs.
    """

    address: str
    reason: FailureReason
    status: int
    retry_after: int | None = None
    method: str
    call_id: str
    merged: int = 0
    """Further failures of this target the edge saw since its last report and did
    not report one by one (it sends at most one report per target and second)."""
    target: str = ""
    """For a gateway or destination given by name: the DNS target that failed
    (``transport:name:port``, an SRV record's target); the others of the name are
    not concerned. Empty for one given by IP address."""


class GatewayFailed(TargetFailed):
    """A routing-table gateway failed a request forwarded to it."""

    routing_key: ClassVar[str] = "edge.gateway.failed"

    gateway_id: str


class DestinationFailed(TargetFailed):
    """A dispatcher destination failed a request; ``address`` is its URI in set ``set_id``."""

    routing_key: ClassVar[str] = "edge.destination.failed"

    set_id: str


class LimitReached(Event):
    """A shared limit refused a call (``kind``: ``concurrent`` or ``cps``) of ``entity``
    (``peer:…``, ``subscriber:…``, ``source:…``, or ``gateway:…`` when every capped gateway
    of the route was at its cap). An edge worker sends at most one per entity every
    ``period`` seconds; ``refused`` counts the calls it refused for it since its last one."""

    routing_key: ClassVar[str] = "edge.limit.reached"

    entity: str
    kind: Literal["concurrent", "cps"]
    limit: int | None = None
    refused: int = 1
    period: float
    edge: str


MEDIA_EXPIRED_QUEUE: Final = "edge.media.expired"
"""The durable work queue ``{ns}.edge.media.expired`` every edge with rtpengine consumes.

Bound to :data:`MEDIA_EXPIRED_EVENTS`: each call the accounting service closed
as ``timeout`` (its BYE never came) reaches one edge, which deletes the call's
rtpengine session (any edge can: the instance is picked by the Call-ID's hash).
"""
MEDIA_EXPIRED_EVENTS: Final = "accounting.cdr.timed_out"
