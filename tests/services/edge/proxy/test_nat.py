"""NAT detection: each sign alone, against the address the request really came from."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.edge.proxy.nat import (
    behind_nat,
    contact_unreachable,
    is_unreachable,
    sdp_connection_hosts,
    sdp_unreachable,
    via_differs,
)
from shared.sip.message import Request, parse_message
from shared.sip.transport.destination import Destination

PUBLIC = Destination("udp", "203.0.113.9", 5060)


@dataclass(frozen=True)
class NatSigns:
    """Which of the tests say NAT, each asked on its own."""

    via: bool = False
    contact: bool = False
    sdp: bool = False


def detect(request: Request, source: Destination) -> NatSigns:
    """Every sign of `request` as `behind_nat` weighs them (the Contact and the SDP only with
    one Via), checked against `behind_nat`'s own short-circuited answer."""
    agent = len(request.vias) == 1
    signs = NatSigns(
        via=via_differs(request, source),
        contact=agent and contact_unreachable(request),
        sdp=agent and sdp_unreachable(request.body),
    )
    assert behind_nat(request, source) == (signs != NatSigns())
    return signs


def invite(via: str, contact: str, sdp: str = "") -> Request:
    body = sdp.replace("\n", "\r\n").encode()
    text = (
        "INVITE sip:+15551234@edge.example SIP/2.0\r\n"
        f"Via: SIP/2.0/{via};branch=z9hG4bK-1\r\n"
        "From: <sip:alice@example.com>;tag=a\r\n"
        "To: <sip:+15551234@edge.example>\r\n"
        "Call-ID: nat-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: {contact}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    message = parse_message(text.encode() + body)
    assert isinstance(message, Request)
    return message


def sdp(address: str) -> str:
    origin = f"o=- 1 1 IN IP4 {address}"
    return f"v=0\n{origin}\ns=-\nc=IN IP4 {address}\nt=0 0\nm=audio 4000 RTP/AVP 0\n"


@pytest.mark.parametrize(
    ("via", "contact", "body", "signs"),
    [
        ("UDP 203.0.113.9:5060", "<sip:a@203.0.113.9>", "", NatSigns()),
        ("UDP 203.0.113.9", "<sip:a@203.0.113.9>", sdp("203.0.113.9"), NatSigns()),
        ("UDP 192.168.1.20:5060", "<sip:a@203.0.113.9>", "", NatSigns(via=True)),
        ("UDP 203.0.113.9:5062", "<sip:a@203.0.113.9>", "", NatSigns(via=True)),
        ("UDP 203.0.113.9;rport", "<sip:a@10.1.2.3:5060>", "", NatSigns(contact=True)),
        ("UDP 203.0.113.9", "<sip:a@203.0.113.9>", sdp("172.20.0.5"), NatSigns(sdp=True)),
        ("UDP 192.168.1.2", "<sip:a@192.168.1.2>", sdp("192.168.1.2"), NatSigns(True, True, True)),
        ("UDP phone.example.com", "<sip:a@phone.example.com>", "", NatSigns(via=True)),
        ("TLS 203.0.113.9", "<sip:a@203.0.113.9;transport=tls>", "", NatSigns(via=True)),
    ],
)
def test_the_signs_of_nat(via: str, contact: str, body: str, signs: NatSigns) -> None:
    request = invite(via, contact, body)
    assert detect(request, PUBLIC) == signs
    assert behind_nat(request, PUBLIC) == (signs != NatSigns())


def test_a_private_contact_behind_a_proxy_is_no_sign_of_the_hop() -> None:
    request = invite("UDP 203.0.113.9", "<sip:a@10.1.2.3>", sdp("10.1.2.3"))
    request.prepend_via("SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK-2")
    assert detect(request, Destination("udp", "198.51.100.1", 5060)) == NatSigns()
    assert detect(request, PUBLIC) == NatSigns(via=True)


def test_sent_by_of_a_tls_phone_defaults_to_5061() -> None:
    tls = Destination("tls", "203.0.113.9", 5061)
    assert not behind_nat(invite("TLS 203.0.113.9", "<sip:a@203.0.113.9>"), tls)


def test_an_ipv6_phone_is_compared_without_brackets() -> None:
    source = Destination("udp", "2001:db8::9", 5060)
    assert detect(invite("UDP [2001:DB8::9]:5060", "<sip:a@[2001:db8::9]>"), source) == NatSigns()
    assert detect(invite("UDP [2001:db8::9]", "<sip:a@[fd00::9]>"), source).contact


@pytest.mark.parametrize(
    ("host", "unreachable"),
    [
        ("10.0.0.1", True),
        ("172.16.0.1", True),
        ("172.31.255.254", True),
        ("172.32.0.1", False),
        ("192.168.0.1", True),
        ("100.64.0.1", True),
        ("100.127.255.254", True),
        ("100.128.0.1", False),
        ("169.254.10.10", True),
        ("127.0.0.1", False),  # loopback: reachable from this host, not a NAT sign
        ("::1", False),
        ("[fd12::1]", True),
        ("fe80::1", True),
        ("2001:db8::1", False),
        ("198.51.100.7", False),
        ("pbx.internal", False),  # a name: nobody can tell without resolving it
    ],
)
def test_unreachable_addresses(host: str, unreachable: bool) -> None:
    assert is_unreachable(host) is unreachable


def test_every_connection_line_of_the_sdp_is_read() -> None:
    body = b"v=0\r\nc=IN IP4 203.0.113.9\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 10.0.0.7/127\r\n"
    assert sdp_connection_hosts(body) == ["203.0.113.9", "10.0.0.7"]
    assert sdp_connection_hosts(b"c=IN IP4\r\n") == []
