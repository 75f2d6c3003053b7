"""The two BYEs of a hang-up, byte for byte, from the legs an answered event carried."""

from __future__ import annotations

import re

import pytest

from services.edge.control.byes import CSEQ_STEP, MAX_CSEQ, BadLegError, bye, bye_cseq
from services.edge.proxy.interfaces import Interface, Interfaces
from shared.contracts.calls import DialogLeg
from shared.sip.message import Request, parse_message
from shared.sip.transport.destination import Destination

UDP = Interfaces([Interface("udp", "192.0.2.10", 5060, 5062)])
SIX = Interfaces([*UDP.all, Interface("tls", "2001:db8::10", 5061, 5061)])
"""An IPv4 UDP interface first, then the IPv6 TLS one a BYE to an IPv6 TLS peer leaves by."""
CALLER = DialogLeg(
    call_id="call-1",
    target="sip:alice@10.0.0.5:5070",
    from_header="<sip:14075551234@example.com>;tag=gw",
    to_header="<sip:alice@example.com>;tag=a1",
    routes=("<sip:sbc.example.net;lr>",),
    address="198.51.100.20:5070",
    transport="udp",
)
CALLEE = DialogLeg(
    call_id="CMH-masked",
    target="sip:gw@203.0.113.1",
    from_header="<sip:alice@example.com>;tag=a1",
    to_header="<sip:14075551234@example.com>;tag=gw",
    routes=("<sip:p1.carrier.net;lr>", "<sip:p2.carrier.net;lr>"),
    address="[2001:db8::1]:5061",
    transport="TLS",
)


def _without_branch(data: bytes) -> bytes:
    return re.sub(rb"branch=z9hG4bK-cmhu-[0-9a-f]{16}", b"branch=B", data)


def test_the_bye_to_the_caller_is_the_callees_as_the_caller_knows_the_dialog() -> None:
    made = bye("caller", CALLER, 1, UDP)
    assert made.destination == Destination("udp", "198.51.100.20", 5070)
    assert made.tags == ("gw", "a1")
    assert _without_branch(made.request.to_bytes()) == (
        b"BYE sip:alice@10.0.0.5:5070 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=B;rport\r\n"
        b"Max-Forwards: 70\r\n"
        b"Route: <sip:sbc.example.net;lr>\r\n"
        b"From: <sip:14075551234@example.com>;tag=gw\r\n"
        b"To: <sip:alice@example.com>;tag=a1\r\n"
        b"Call-ID: call-1\r\n"
        b"CSeq: 100001 BYE\r\n"
        b'Reason: SIP;cause=200;text="Call ended by the operator"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    parsed = parse_message(made.request.to_bytes())
    assert isinstance(parsed, Request)
    parsed.validate()
    assert parsed.top_branch == made.branch


def test_the_bye_to_the_callee_carries_its_call_id_and_routes_in_order() -> None:
    made = bye("callee", CALLEE, 41, SIX)
    assert made.destination == Destination("tls", "2001:db8::1", 5061)
    data = made.request.to_bytes()
    assert data.startswith(
        b"BYE sip:gw@203.0.113.1 SIP/2.0\r\nVia: SIP/2.0/TLS [2001:db8::10]:5061"
    )
    assert b"Route: <sip:p1.carrier.net;lr>\r\nRoute: <sip:p2.carrier.net;lr>\r\n" in data
    assert b"Call-ID: CMH-masked\r\nCSeq: 100041 BYE\r\n" in data
    assert made.tags == ("a1", "gw")


def test_a_leg_without_a_target_is_addressed_to_its_next_hop() -> None:
    made = bye("callee", CALLEE.model_copy(update={"target": ""}), 1, UDP)
    assert made.request.uri_text == "sip:[2001:db8::1]:5061"


def test_the_cseq_stays_below_two_to_the_31() -> None:
    assert bye_cseq(7) == 7 + CSEQ_STEP
    assert bye_cseq(MAX_CSEQ - 3) == MAX_CSEQ


@pytest.mark.parametrize(
    "change",
    [
        {"address": "example.com:5060"},
        {"address": "10.0.0.1"},
        {"address": "10.0.0.1:99999"},
        {"transport": "sctp"},
        {"target": "not a uri"},
        {"to_header": "<sip:a@b>;tag=x\r\nEvil: 1"},
        {"routes": ("<sip:a;lr>\nX: y",)},
        {"call_id": ""},
    ],
)
def test_a_leg_no_edge_recorded_is_refused(change: dict[str, object]) -> None:
    with pytest.raises(BadLegError):
        bye("caller", CALLER.model_copy(update=change), 1, UDP)
