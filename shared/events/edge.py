"""The ``edge.…`` events other services act on: what an edge saw happen to a gateway.

The health service consumes :class:`GatewayFailed` so that a gateway the edges
see failing is probed at once instead of at its next round. It lives here, not
in the edge, so both sides share one definition without importing each other.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from shared.bus import Event

FailureReason = Literal["timeout", "status", "transport"]


class GatewayFailed(Event):
    """A gateway failed a request forwarded to it.

    ``reason``: ``timeout`` (no final answer in time; ``status`` 408 made
    locally), ``status`` (it answered 5xx itself), ``transport`` (the request
    could not be sent; ``status`` 503 made locally). ``retry_after``: seconds
    from the gateway's Retry-After, if any. ``method`` and ``call_id`` correlate
    with the edge's logs.
    """

    routing_key: ClassVar[str] = "edge.gateway.failed"

    gateway_id: str
    address: str
    reason: FailureReason
    status: int
    retry_after: int | None = None
    method: str
    call_id: str
