"""Where a forwarded request goes: the next-hop URI turned into a transport destination.

RFC 3263 DNS (NAPTR/SRV) is not done: gateways and dialog peers are given by
IP literal, as carrier interconnects are configured in practice.  A host
name is passed on as is and the transport's resolver decides.
"""

from __future__ import annotations

from shared.sip.errors import SipError
from shared.sip.transport.destination import Destination, default_port, unbracket
from shared.sip.uri import SipUri, Uri

SUPPORTED_TRANSPORTS = frozenset({"udp", "tcp"})


def destination_of(uri: Uri) -> Destination:
    """The destination for next-hop `uri` (maddr, then host; transport param; default port).

    Raises `SipError(416)` for a non-SIP URI and `SipError(503)` for a
    transport the edge does not speak, the answers a proxy owes the caller.
    """
    if not isinstance(uri, SipUri):
        raise SipError("Unsupported URI Scheme", 416)
    transport = (uri.param("transport") or ("tcp" if uri.scheme == "sips" else "udp")).lower()
    if transport not in SUPPORTED_TRANSPORTS:
        raise SipError(f"transport {transport} not available", 503)
    host = uri.param("maddr") or uri.host
    return Destination(transport, unbracket(host), uri.port or default_port(transport))
