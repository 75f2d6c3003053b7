"""What the answered event carries of each party (`call_legs`), for a hang-up from the API."""

from __future__ import annotations

import base64

from services.edge.proxy.call_legs import callee_leg, caller_leg
from shared.contracts.calls import CallAnswered, DialogLeg
from shared.sip.message import Request, Response, parse_message
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.support import published
from tests.services.edge.proxy.test_call_events import events_run
from tests.services.edge.proxy.test_core import CALLER, GW1, answer, invite, only_request

UPSTREAM = "<sip:sbc.example.net;lr>"
"""A proxy between the caller and the edge (its Record-Route came with the INVITE)."""
BEYOND = ("<sip:p2.carrier.net;lr>", "<sip:p1.carrier.net;lr>")
"""Two proxies past the edge, as the 2xx lists them (the one nearest the callee on top)."""


def _answered_through_proxies() -> tuple[CallAnswered, Request]:
    run = events_run()
    forwarded = only_request(run.send(invite(extra=f"Record-Route: {UPSTREAM}\r\n")), GW1)
    ok = answer(forwarded, 200).replace(
        b"Record-Route: ", f"Record-Route: {', '.join(BEYOND)}\r\nRecord-Route: ".encode(), 1
    )
    answered = [e for e in published(run.send(ok, GW1)) if isinstance(e, CallAnswered)]
    assert len(answered) == 1
    return answered[0], forwarded


def test_the_answered_event_says_how_to_reach_each_party_without_the_edge() -> None:
    event, forwarded = _answered_through_proxies()
    assert event.cseq == 1
    assert event.caller_leg == DialogLeg(
        call_id="call-1",
        target="sip:alice@10.0.0.5:5070",
        from_header="<sip:14075551234@example.com>;tag=gw",
        to_header="<sip:alice@example.com>;tag=a1",
        routes=(UPSTREAM,),
        address=f"{CALLER.host}:{CALLER.port}",
        transport="udp",
    )
    assert event.callee_leg == DialogLeg(
        call_id=forwarded.call_id,
        target="sip:gw@203.0.113.1",
        from_header="<sip:alice@example.com>;tag=a1",
        to_header="<sip:14075551234@example.com>;tag=gw",
        routes=tuple(reversed(BEYOND)),
        address=f"{GW1.host}:{GW1.port}",
        transport="udp",
    )


def _ok(contact: str) -> Response:
    message = parse_message(
        (
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx\r\n"
            "From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b1\r\n"
            f"Call-ID: c\r\nCSeq: 1 INVITE\r\n{contact}Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Response)
    return message


def _sent() -> Request:
    message = parse_message(invite())
    assert isinstance(message, Request)
    return message


def test_a_callee_behind_nat_is_addressed_by_its_own_contact_not_the_edges_stand_in() -> None:
    phone = "sip:bob@10.1.1.7:5062;transport=tcp"
    token = base64.urlsafe_b64encode(phone.encode()).rstrip(b"=").decode()
    ok = _ok(f"Contact: <sip:bob@192.0.2.10:5060;cm-flow=F;cm-ct={token};cm-rr=T>\r\n")
    leg = callee_leg(_sent(), Destination("tcp", "198.51.100.7", 40000), ok)
    assert leg.target == phone
    assert (leg.address, leg.transport) == ("198.51.100.7:40000", "tcp")


def test_a_2xx_without_a_contact_leaves_the_target_empty() -> None:
    leg = callee_leg(_sent(), GW1, _ok(""))
    assert leg.target == ""
    assert caller_leg(_sent(), CALLER, _ok("")).target == "sip:alice@10.0.0.5:5070"
