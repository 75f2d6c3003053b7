"""The probe itself, sans-IO: an OPTIONS request for a target URI, and where it goes.

The request is what OpenSIPS/Kamailio send as keep-alive pings: Max-Forwards
70, a From naming the prober, To and Request-URI the target, a fresh branch
and Call-ID, ``rport`` so a NATed answer still finds us.
"""

from __future__ import annotations

from shared.sip.branch import new_branch, new_call_id, new_tag
from shared.sip.message import Request
from shared.sip.transport.destination import Destination, destination_of
from shared.sip.uri import parse_uri

USER_AGENT = "callmesh-health"


def probe_destination(address: str) -> Destination:
    """Where to send the probe of ``address``; raises ``SipError`` for an unusable URI."""
    return destination_of(parse_uri(address))


def options_request(
    address: str, destination: Destination, via_host: str, via_port: int
) -> Request:
    """An OPTIONS to ``address`` leaving by ``destination.transport`` from ``via_host:via_port``."""
    host = f"[{via_host}]" if ":" in via_host else via_host
    via = f"SIP/2.0/{destination.transport.upper()} {host}:{via_port};branch={new_branch()};rport"
    return Request.build(
        "OPTIONS",
        address,
        [
            ("Via", via),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{USER_AGENT}@{host}>;tag={new_tag()}"),
            ("To", f"<{address}>"),
            ("Call-ID", new_call_id(via_host)),
            ("CSeq", "1 OPTIONS"),
            ("User-Agent", USER_AGENT),
        ],
    )
