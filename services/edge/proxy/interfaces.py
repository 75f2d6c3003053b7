"""The edge's own addresses: what it writes into Via and Record-Route, and what it recognises.

A proxy must tell its own Route entries, Request-URIs and Vias from everyone
else's (RFC 3261 §16.4, §16.7), and must write the address peers can reach
(the advertised one behind NAT or in a container), not necessarily the one
it bound.  Each listening socket is one `Interface`; the strings written per
message are built once here so forwarding only concatenates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shared.sip.transport.destination import WEBSOCKETS, default_port, unbracket
from shared.sip.via import Via


def uri_host(host: str) -> str:
    """An address as written in a URI or Via: IPv6 literals get brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def uri_transport(transport: str) -> str:
    """The `transport` URI parameter of a transport: `ws` for WSS too (RFC 7118 §7 registers
    `ws` only; a secure WebSocket is told by the Via, `SIP/2.0/WSS`)."""
    return "ws" if transport == "wss" else transport


@dataclass(frozen=True, slots=True)
class Interface:
    """One listening socket as peers see it.

    `via_port` differs from `port` when this worker sends from a private port
    (see `services.edge.runtime.pool`): responses come back to the Via's port,
    in-dialog requests to the Record-Route's shared one.
    """

    transport: str
    host: str
    port: int
    via_port: int
    via_prefix: str = field(init=False)
    via_parts: Via = field(init=False)
    """`via_prefix` parsed, without the branch: what `via` completes."""
    record_route: str = field(init=False)
    secure_record_route: str = field(init=False)
    """On a TLS interface, the `sips:` Record-Route of a request whose Request-URI or top
    Route is `sips:` (RFC 3261 §16.6 step 4); elsewhere the plain one."""

    def __post_init__(self) -> None:
        host = uri_host(self.host)
        # RFC 5923: over TLS the peer may send its requests to us down our connection (if it
        # verifies our client certificate; we take requests on connections we open anyway).
        alias = ";alias" if self.transport == "tls" else ""
        via = f"SIP/2.0/{self.transport.upper()} {host}:{self.via_port}{alias};branch="
        suffix = "" if self.transport == "udp" else f";transport={uri_transport(self.transport)}"
        plain = f"<sip:{host}:{self.port}{suffix};lr>"
        object.__setattr__(self, "via_prefix", via)
        params = (("alias", None),) if alias else ()
        object.__setattr__(
            self, "via_parts", Via(self.transport.upper(), host, self.via_port, params)
        )
        object.__setattr__(self, "record_route", plain)
        secure = f"<sips:{host}:{self.port};lr>" if self.transport == "tls" else plain
        object.__setattr__(self, "secure_record_route", secure)

    def via(self, branch: str) -> tuple[str, Via]:
        """This interface's Via with `branch`, as text and as the `Via` that text parses to
        (for `Message.prepend_via`: made from its parts, never parsed back)."""
        parts = self.via_parts
        params = (*parts.params, ("branch", branch))
        return self.via_prefix + branch, Via(parts.transport, parts.host, parts.port, params)

    @property
    def ipv6(self) -> bool:
        return ":" in self.host


class Interfaces:
    """Every interface of this edge, and the test "is this address ours?"."""

    def __init__(
        self, interfaces: Sequence[Interface], also_ours: Iterable[tuple[str, int]] = ()
    ) -> None:
        """`also_ours`: bound host:port pairs peers may still use besides the advertised ones."""
        if not interfaces:
            raise ValueError("the edge needs at least one SIP interface")
        self.all = tuple(interfaces)
        self._ours: set[tuple[str, int]] = {(host.lower(), port) for host, port in also_ours}
        for interface in interfaces:
            for port in {interface.port, interface.via_port}:
                self._ours.add((interface.host.lower(), port))

    def is_ours(self, host: str, port: int | None, transport: str = "udp") -> bool:
        """True for one of our host:port pairs (a missing port means the default)."""
        host = unbracket(host).lower()
        return (host, port or default_port(transport)) in self._ours

    def outbound(self, transport: str, host: str) -> Interface:
        """The interface a message to `host` over `transport` leaves by.

        Mirrors how `Transports` picks its socket: the first of the transport
        and address family; any interface of the family if the transport has none.
        """
        ipv6 = ":" in host
        fallback = None
        for interface in self.all:
            if interface.ipv6 == ipv6:
                if interface.transport == transport:
                    return interface
                fallback = fallback or interface
        return fallback or self.all[0]

    def for_edges(self, inbound: Interface) -> Interface:
        """Where other edges reach a phone that came in on `inbound`: that interface, but for
        a WebSocket (an edge opens none), the first TLS, TCP or UDP one of its address family."""
        if inbound.transport not in WEBSOCKETS:
            return inbound
        for transport in ("tls", "tcp", "udp"):
            for interface in self.all:
                if interface.transport == transport and interface.ipv6 == inbound.ipv6:
                    return interface
        return inbound

    def inbound(self, transport: str, host: str, port: int) -> Interface:
        """The interface a message arrived on (by the local address of its socket)."""
        host = unbracket(host).lower()
        for interface in self.all:
            if interface.transport == transport and interface.via_port == port:
                return interface
        for interface in self.all:
            if interface.transport == transport and interface.port == port:
                return interface
        return self.outbound(transport, host)
