"""The ``edge.…`` events other services act on: what an edge saw happen to a target.

The health service consumes :class:`GatewayFailed` and :class:`DestinationFailed`
so that a gateway or dispatcher destination the edges see failing is probed at
once instead of at its next round. They live here, not in the edge, so both
sides share one definition without importing each other.
"""

from __future__ import annotations

from typing import ClassVar, Literal

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


class GatewayFailed(TargetFailed):
    """A routing-table gateway failed a request forwarded to it."""

    routing_key: ClassVar[str] = "edge.gateway.failed"

    gateway_id: str


class DestinationFailed(TargetFailed):
    """A dispatcher destination failed a request; ``address`` is its URI in set ``set_id``."""

    routing_key: ClassVar[str] = "edge.destination.failed"

    set_id: str
