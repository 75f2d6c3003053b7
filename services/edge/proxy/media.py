"""The media relay's settings and the questions the proxy core asks of a message, without I/O.

The core decides, per hop, whether a call's media goes through rtpengine
(`relays`): the table's policy toward the hop (gateway, else rule), else the
process default; `nat` relays when the caller is behind NAT (the nathelper
signs of `nat`, asked only here, at the edge that received the INVITE) or the
callee is reached along a flow (the registrar saw it behind NAT or on a
connection).  The runtime carries out the `Media` actions against rtpengine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from services.edge.proxy.bodies import sdp_of, with_sdp
from shared.sip.message import Request, Response
from shared.sip.transport.destination import Destination

Policy = Literal["always", "nat", "never"]
OFFERING: Final = frozenset({"INVITE", "UPDATE"})
"""Requests whose SDP is an offer (an in-dialog one of a relayed call's too); a PRACK's is
the answer to a reliable 1xx's offer in a late-offer dialog, else an offer (`relay`)."""


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """`default`: the policy where the table sets none; `required`: refuse a call (503) the
    policy relays when rtpengine cannot take it, instead of carrying it on unrelayed."""

    default: Policy = "nat"
    required: bool = False
    retry_after: int = 30
    """Seconds in the 503's Retry-After."""
    domains: Mapping[str, Policy] = field(default_factory=dict)
    """Subscriber domain (lower-case) → its policy, where the table sets none."""

    def domain_policy(self, request: Request, to_subscriber: bool) -> Policy | None:
        """The policy of the subscriber domain a call concerns: the callee's (Request-URI) for a
        call to a subscriber's binding, the caller's (From) otherwise; None where it sets none."""
        if not self.domains:
            return None
        uri = request.uri if to_subscriber else request.from_.uri
        host = getattr(uri, "host", None)
        return self.domains.get(host.lower()) if isinstance(host, str) else None


def message_sdp(message: Request | Response) -> bytes | None:
    """The SDP `message` carries, for rtpengine (`bodies.sdp_of`)."""
    return sdp_of(message.body, message.content_type)


def put_sdp(message: Request | Response, sdp: bytes) -> bytes:
    """`message`'s body with its SDP replaced by rtpengine's (`bodies.with_sdp`)."""
    return with_sdp(message.body, message.content_type, sdp)


@dataclass(slots=True)
class Unsent:
    """A message that leaves statelessly once rtpengine has rewritten its SDP: the ACK of a
    late offer (its answer), a relayed call's 2xx retransmitted with no transaction left."""

    message: Request | Response
    destination: Destination
    command: str
