"""Messages the transaction tests exchange, built from wire bytes like real ones."""

from __future__ import annotations

from shared.sip.message import Request, Response, parse_message
from shared.sip.timers import TimerSettings
from shared.sip.transport.destination import Destination

SETTINGS = TimerSettings(t1=0.5, t2=4.0, t4=5.0, timer_c=10.0)
UDP_PEER = Destination("udp", "192.0.2.7", 5060)
TCP_PEER = Destination("tcp", "192.0.2.7", 5060, connection_id=3)
BRANCH = "z9hG4bKnashds8"


def request(
    method: str = "INVITE",
    *,
    branch: str = BRANCH,
    sent_by: str = "192.0.2.1:5060",
    transport: str = "UDP",
    to_tag: str | None = None,
    cseq_method: str | None = None,
    call_id: str = "a84b4c76e66710",
    uri: str = "sip:bob@example.com",
    routes: tuple[str, ...] = (),
) -> Request:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    route_lines = "".join(f"Route: {route}\r\n" for route in routes)
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by};branch={branch}\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKupstream\r\n"
        f"{route_lines}"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 314159 {cseq_method or method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Request)
    return message


def response(
    status: int,
    *,
    method: str = "INVITE",
    branch: str = BRANCH,
    to_tag: str | None = "as83kd",
    reason: str = "Reason",
) -> Response:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"SIP/2.0 {status} {reason}\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        f"Via: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKupstream\r\n"
        f"To: {to}\r\n"
        "From: Alice <sip:alice@example.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710\r\n"
        f"CSeq: 314159 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse_message(text.encode())
    assert isinstance(message, Response)
    return message
