"""Is the sender of a request behind NAT?  The nathelper tests, answered from the message alone.

Only the edge that received a request from its sender can tell: it alone
sees the address the packet really came from.  So the edge asks once, when
the request arrives, and what it does about the answer (a flow recorded in
its Record-Route) travels with the dialog; no edge further on asks again.

Three signs, as OpenSIPS' and Kamailio's `nat_uac_test` look for them:

- `via`: the top Via's sent-by is not where the request came from (the
  `received`/`rport` the edge stamps would differ from it);
- `contact`: a Contact names an address nobody outside its network can
  reach (RFC 1918, shared address space 100.64/10, link-local, IPv6 unique
  local and link-local);
- `sdp`: the SDP's connection address (`c=`) is such an address.

Loopback is not counted as private: a loopback Contact is reachable from a
process on the same host (the edge's own tests, a local softswitch), and a
phone on another host cannot send from it.  Host names are taken as they
are: without a DNS lookup (which the edge does not do here) nobody can tell.
"""

from __future__ import annotations

import ipaddress
from typing import Final

from shared.sip.message import Request
from shared.sip.transport.destination import Destination
from shared.sip.uri import SipUri

_UNREACHABLE: Final = tuple(
    ipaddress.ip_network(network)
    for network in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "169.254.0.0/16",
        "fc00::/7",
        "fe80::/10",
    )
)
_DEFAULT_PORTS: Final = {"TLS": 5061, "WSS": 443, "WS": 80}


def behind_nat(request: Request, source: Destination) -> bool:
    """Whether any sign says `request`, as received from `source`, comes from behind NAT.

    The cheap sign first (the top Via is parsed already); the SDP is read only
    when nothing else told.  The Contact and the SDP describe the user agent, so
    they count only when the sender is that agent (one Via): behind a proxy
    (another edge, a PBX) a private Contact says nothing about the hop the
    request came from.
    """
    if via_differs(request, source):
        return True
    if len(request.vias) > 1:
        return False
    return contact_unreachable(request) or sdp_unreachable(request.body)


def via_differs(request: Request, source: Destination) -> bool:
    """The top Via's sent-by (host, and port: 5060 if absent) is not `source`'s address."""
    via = request.top_via
    port = via.port if via.port is not None else _DEFAULT_PORTS.get(via.transport, 5060)
    return via.host.strip("[]").lower() != source.host.lower() or port != source.port


def contact_unreachable(request: Request) -> bool:
    """A Contact of `request` names an address of a private, shared or link-local network."""
    return any(
        isinstance(address.uri, SipUri) and is_unreachable(address.uri.host)
        for address in request.contacts
    )


def sdp_unreachable(body: bytes) -> bool:
    """A `c=` line of the SDP `body` names such an address."""
    return any(is_unreachable(host) for host in sdp_connection_hosts(body))


def is_unreachable(host: str) -> bool:
    """Whether `host` is an IP literal of a private, shared or link-local network."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False  # a host name
    return any(ip in network for network in _UNREACHABLE)


def sdp_connection_hosts(body: bytes) -> list[str]:
    """The addresses of an SDP body's `c=` lines (session and media level), in order."""
    hosts = []
    for line in body.splitlines():
        if line.startswith(b"c="):
            fields = line[2:].split()
            if len(fields) == 3:
                hosts.append(fields[2].split(b"/")[0].decode("ascii", "replace"))
    return hosts
