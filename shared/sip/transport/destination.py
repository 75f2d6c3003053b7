"""Where a message goes: a peer address plus, for streams, the connection to reuse.

`response_destination` applies RFC 3261 §18.2.2 and RFC 3581 §4 so that every
service answers exactly where the RFCs say, including NATed clients (rport)
and stream clients that must be answered on the connection they opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from shared.sip.errors import SipError
from shared.sip.uri import SipUri, Uri
from shared.sip.via import Via

UNRELIABLE_TRANSPORTS: Final = frozenset({"udp"})
WEBSOCKETS: Final = frozenset({"ws", "wss"})
"""Transports whose peers are reached only over the connection they opened (RFC 7118)."""


@dataclass(slots=True, init=False, eq=False)
class Destination:
    """A peer: transport (lower-case), host (IP literal or name, no brackets), port.

    `connection_id` names the stream connection a message arrived on or should
    leave by; the TCP adapter uses it while that connection is open and falls
    back to host and port otherwise (RFC 3261 §18.2.2).
    """

    transport: Final[str]
    host: Final[str]
    port: Final[int]
    connection_id: Final[int | None]
    pinned: bool
    """The transport must not change: the next hop's URI names it (`;transport=udp`), or
    it is already the fallback of RFC 3261 §18.1.1.  Not part of equality."""
    reconnect_port: int | None
    """Where a new connection goes when `connection_id`'s has closed, if not to `port`: a
    response's sent-by port (§18.2.2), the connection's own being the peer's ephemeral one."""

    def __init__(  # noqa: PLR0917 — the dataclass's own signature
        self,
        transport: str,
        host: str,
        port: int,
        connection_id: int | None = None,
        pinned: bool = False,
        reconnect_port: int | None = None,
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.connection_id = connection_id
        self.pinned = pinned
        self.reconnect_port = reconnect_port

    def __eq__(self, other: object) -> bool:
        """Transport, host, port and connection (written out, as `__init__` is: the
        generated one runs as Python, and the proxy compares destinations per message)."""
        if not isinstance(other, Destination):
            return NotImplemented
        return (
            self.port == other.port
            and self.host == other.host
            and self.transport == other.transport
            and self.connection_id == other.connection_id
        )

    def __hash__(self) -> int:
        return hash((self.transport, self.host, self.port, self.connection_id))

    @property
    def reliable(self) -> bool:
        """Whether the transport retransmits by itself, which switches the SIP timers off."""
        return self.transport not in UNRELIABLE_TRANSPORTS

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


def default_port(transport: str) -> int:
    return 5061 if transport in ("tls", "wss") else 5060


def unbracket(host: str) -> str:
    """`[2001:db8::1]` → `2001:db8::1`, as socket APIs want it.

    Its ends compared as slices: `str.startswith` and `endswith` parse their arguments
    from a tuple in CPython 3.11, several times the cost of a slice and a compare, and
    this runs for every Via and address the proxy reads.
    """
    return host[1:-1] if host[:1] == "[" and host[-1:] == "]" else host


def response_destination(
    via: Via, source: tuple[str, int] | None = None, connection_id: int | None = None
) -> Destination:
    """Where to send a response whose topmost Via is `via`.

    `source` is the address the request came from, if known; it stands in for
    the `received`/`rport` values a server stamps on the Via (§18.2.1, RFC
    3581 §4), so this works before and after the stamping.  On a stream the
    response goes back on `connection_id` while it is open; over a WebSocket, to the
    address it came from whatever its Via says (a `.invalid` host, RFC 7118 §5).
    """
    transport = via.transport.lower()
    if transport in WEBSOCKETS and source is not None:
        return Destination(transport, source[0], source[1], connection_id)
    fallback_port = via.port or default_port(transport)
    reliable = transport not in UNRELIABLE_TRANSPORTS
    maddr = via.maddr
    if maddr and not reliable:
        return Destination(transport, unbracket(maddr), fallback_port)
    if source is not None:
        host = source[0]
        if reliable and connection_id is not None and not via.wants_rport:
            return Destination(
                transport, unbracket(host), source[1], connection_id, reconnect_port=fallback_port
            )
        port = source[1] if via.wants_rport else fallback_port
    else:
        host = via.received or via.host
        port = via.rport or fallback_port
    return Destination(transport, unbracket(host), port, connection_id if reliable else None)


SUPPORTED_TRANSPORTS: Final = frozenset({"udp", "tcp", "tls", "ws", "wss"})


def transport_of(uri: SipUri) -> str:
    """The transport a next-hop URI names (lower-case): its `transport` parameter, else UDP;
    a `sips:` URI goes over TLS (RFC 3261 §26.2.1), whatever else it names: `;transport=tcp`
    is the old way of writing TLS for it, and UDP cannot carry it."""
    named = (uri.param("transport") or "udp").lower()
    return "tls" if uri.scheme == "sips" and named in ("tcp", "udp") else named


def destination_of(uri: Uri) -> Destination:
    """The destination for next-hop `uri` (maddr, then host; transport param; default port).

    RFC 3263 DNS (NAPTR/SRV) is not done: gateways and dialog peers are given by
    IP literal, as carrier interconnects are configured in practice; a host name
    is passed on as is and the transport's resolver decides.  Raises
    `SipError(416)` for a non-SIP URI and `SipError(503)` for a transport we do
    not speak, the answers a proxy owes the caller.
    """
    if not isinstance(uri, SipUri):
        raise SipError("Unsupported URI Scheme", 416)
    named = uri.param("transport")
    transport = transport_of(uri)
    if transport not in SUPPORTED_TRANSPORTS:
        raise SipError(f"transport {transport} not available", 503)
    host = uri.param("maddr") or uri.host
    port = uri.port or default_port(transport)
    return Destination(transport, unbracket(host), port, pinned=named is not None)
