"""The ``edge.…`` events: what an edge saw that other services act on."""

from __future__ import annotations

from typing import ClassVar, Literal

from shared.bus import Event

FailureReason = Literal["timeout", "status", "transport"]


class GatewayFailed(Event):
    """A gateway failed a request forwarded to it; the health service may start probing it.

    Fields: ``gateway_id`` and ``address`` (its routing-table id and URI);
    ``reason``: ``timeout`` (no final answer within the failover timer or
    Timer B/C), ``status`` (it answered 503 or another 5xx), ``transport``
    (the message could not be sent, e.g. TCP connect refused); ``status``: the
    SIP status received (or locally made: 408 for a timeout, 503 for a
    transport error); ``retry_after``: seconds from its Retry-After, if any;
    ``method`` and ``call_id`` of the failed request, for correlation.
    """

    routing_key: ClassVar[str] = "edge.gateway.failed"

    gateway_id: str
    address: str
    reason: FailureReason
    status: int
    retry_after: int | None = None
    method: str
    call_id: str
