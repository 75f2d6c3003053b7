"""The two BYEs that end a proxied call, from what the answered event carried (sans-IO).

Why from the records: the edge keeps no dialog state (docs/edge.md), so when
the API hangs a proxied call up, each party's BYE is built from its
`DialogLeg`, kept by the accounting service: to its remote target, along the
routes between the edge and it, with the From and To (tags) and the Call-ID
as *it* knows them, leaving by the edge's interface toward the next hop and
sent there.  The BYE to the callee looks like the caller's, the one to the
caller like the callee's.

What the records cannot know is the CSeq each party last received: the
caller's sequence is known up to the INVITE, re-INVITEs or INFOs since are
not; the callee's own sequence not at all.  Both BYEs therefore carry the
INVITE's CSeq plus `CSEQ_STEP` (below 2**31, as RFC 3261 §8.1.1.5 bounds it),
as peers that end a dialog they did not track do: a party that has sent (or
received) more requests than that in one call, or that began its own
sequence above it, refuses the BYE (500) and the outcome says so.

Each BYE's branch is marked (`BRANCH_MARK`), so its answer is told apart from
the proxied traffic and taken by the hang-up that sent it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import Final, Literal

from services.edge.proxy.interfaces import Interfaces
from shared.contracts.calls import DialogLeg
from shared.sip.branch import MAGIC_COOKIE
from shared.sip.errors import SipError
from shared.sip.message import Request
from shared.sip.transport.destination import Destination, unbracket
from shared.sip.uri import parse_uri, split_host_port

CSEQ_STEP: Final = 100_000
"""What each BYE's CSeq adds to the INVITE's (see the module's docstring)."""
MAX_CSEQ: Final = 2**31 - 1
BRANCH_MARK: Final = MAGIC_COOKIE + "-cmhu-"
"""What every hang-up BYE's branch starts with."""
REASON: Final = 'SIP;cause=200;text="Call ended by the operator"'
"""RFC 3326: why the call ended, for the parties' own records."""

UNSAFE: Final = frozenset("\r\n\x00")
"""What no header value of a leg may hold: the BYE's lines are written from them."""

Side = Literal["caller", "callee"]


class BadLegError(ValueError):
    """A leg whose next hop is no address the edge can send to (from a record it did not make)."""


@dataclass(frozen=True, slots=True)
class Bye:
    """One BYE to one party, where it goes, and how its answer is recognised."""

    side: Side
    request: Request
    destination: Destination
    branch: str

    @property
    def tags(self) -> tuple[str, str]:
        """The BYE's own From and To tags (what its `edge.call.ended` carries)."""
        return self.request.from_tag or "", self.request.to_tag or ""


def bye_cseq(invite_cseq: int) -> int:
    return min(invite_cseq + CSEQ_STEP, MAX_CSEQ)


def next_hop(leg: DialogLeg) -> Destination:
    """Where a message to `leg` is sent: its recorded next hop, an address (never a name)."""
    try:
        host, port = split_host_port(leg.address)
    except SipError as error:
        raise BadLegError(f"next hop {leg.address!r}: {error}") from None
    transport, host = leg.transport.lower(), unbracket(host)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise BadLegError(f"next hop {leg.address!r} is no IP address") from None
    if port is None or transport not in ("udp", "tcp", "tls", "ws", "wss"):
        raise BadLegError(f"next hop {leg.address!r} over {leg.transport!r}")
    return Destination(transport, host, port)


def bye(side: Side, leg: DialogLeg, invite_cseq: int, interfaces: Interfaces) -> Bye:
    """The BYE to `leg`, leaving by the interface toward its next hop; `BadLegError` for a
    leg no edge would have recorded (a line break in a header, a target no URI)."""
    destination = next_hop(leg)
    interface = interfaces.outbound(destination.transport, destination.host)
    fields = (leg.target, leg.from_header, leg.to_header, leg.call_id, *leg.routes)
    if any(UNSAFE.intersection(value) for value in fields) or not leg.call_id:
        raise BadLegError("a header of the leg holds a line break or is empty")
    branch = BRANCH_MARK + os.urandom(8).hex()
    host = f"[{interface.host}]" if ":" in interface.host else interface.host
    headers = [
        ("Via", f"SIP/2.0/{interface.transport.upper()} {host}:{interface.via_port};"
                f"branch={branch};rport"),
        ("Max-Forwards", "70"),
        *(("Route", route) for route in leg.routes),
        ("From", leg.from_header),
        ("To", leg.to_header),
        ("Call-ID", leg.call_id),
        ("CSeq", f"{bye_cseq(invite_cseq)} BYE"),
        ("Reason", REASON),
    ]  # fmt: skip # the Via's one value split over two lines
    target = leg.target or f"sip:{leg.address}"
    try:
        parse_uri(target)
    except SipError as error:
        raise BadLegError(f"target {target!r}: {error}") from None
    return Bye(side, Request.build("BYE", target, headers), destination, branch)
