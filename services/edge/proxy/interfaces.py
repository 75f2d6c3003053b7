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

from shared.sip.transport.destination import default_port, unbracket


def uri_host(host: str) -> str:
    """An address as written in a URI or Via: IPv6 literals get brackets."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


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
    record_route: str = field(init=False)

    def __post_init__(self) -> None:
        host = uri_host(self.host)
        via = f"SIP/2.0/{self.transport.upper()} {host}:{self.via_port};branch="
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        object.__setattr__(self, "via_prefix", via)
        object.__setattr__(self, "record_route", f"<sip:{host}:{self.port}{suffix};lr>")

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
