"""The writers' byte splices give what rewriting the header from parsed values gives."""

from __future__ import annotations

import pytest

from shared.sip.errors import SipParseError
from shared.sip.message import Request, Response, parse_message
from shared.sip.responses import make_response
from shared.sip.via import parse_via

REST = (
    b"Via: SIP/2.0/TCP lower.example.com;branch=z9hG4bKlow\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\n"
    b"CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
)
PLAIN = b"Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKa"


def invite(top_via: bytes) -> Request:
    message = parse_message(b"INVITE sip:b@example.com SIP/2.0\r\n" + top_via + b"\r\n" + REST)
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(
    "top_via",
    [
        PLAIN,
        PLAIN + b";rport",
        b"Via: SIP/2.0/UDP 10.0.0.7;rport;branch=z9hG4bKa",
        b"v: SIP/2.0/UDP [2001:db8::7]:5060;RPort;branch=z9hG4bKa",
        PLAIN + b";rport;rport",  # not the plain form: rewritten whole
        PLAIN + b";rport=1024",
        PLAIN + b";received=192.0.2.1;rport",
        PLAIN + b" ; rport",
        PLAIN + b";rportal=1",
        PLAIN + b';x="a,b";rport',
        PLAIN + b";rport, SIP/2.0/UDP other.example.com;branch=z9hG4bKb",
        PLAIN + b"\r\n ;rport",
        PLAIN + b";rport ",
    ],
)
@pytest.mark.parametrize("rport", [None, 40123])
def test_stamping_the_top_via_gives_the_via_a_rewrite_gives(
    top_via: bytes, rport: int | None
) -> None:
    rewritten = invite(top_via)
    via = rewritten.top_via
    if rport is None:
        rewritten.replace_top_via(via.with_params(received="192.0.2.9"))
    else:
        rewritten.replace_top_via(via.with_params(received="192.0.2.9", rport=str(rport)))
    stamped = invite(top_via)
    stamped.stamp_top_via("192.0.2.9", rport)
    assert stamped.top_via == rewritten.top_via
    assert stamped.vias == rewritten.vias
    again = parse_message(stamped.to_bytes())
    assert again.vias == rewritten.vias
    assert again.top_via.received == "192.0.2.9"
    assert again.header("from") == rewritten.header("from")


def test_a_plain_via_keeps_its_line_as_received_with_the_stamp_spliced_in() -> None:
    message = invite(PLAIN + b";rport;alias")
    message.stamp_top_via("192.0.2.9", 40123)
    assert message.to_bytes().split(b"\r\n")[1] == (
        PLAIN + b";rport=40123;alias;received=192.0.2.9"
    )
    compact = invite(b"v:SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKa")
    compact.stamp_top_via("192.0.2.9")
    assert compact.to_bytes().split(b"\r\n")[1] == (
        b"v:SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKa;received=192.0.2.9"
    )
    flagged = invite(b"v:SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKa;rport")
    flagged.stamp_top_via("192.0.2.9", 40123)
    assert flagged.to_bytes().split(b"\r\n")[1] == (
        b"v:SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKa;rport=40123;received=192.0.2.9"
    )


def test_a_via_ending_in_a_blank_is_rewritten_not_spliced() -> None:
    message = invite(PLAIN + b" ")
    message.stamp_top_via("192.0.2.9")
    assert message.to_bytes().split(b"\r\n")[1] == PLAIN + b";received=192.0.2.9"


def test_a_stamped_via_leaves_the_vias_read_before_it_in_place() -> None:
    message = invite(PLAIN + b";rport")
    lower = message.vias[1]
    message.stamp_top_via("192.0.2.9", 5060)
    assert message.vias[1] is lower
    assert message.top_via.rport == 5060


def sent_with_our_via() -> Request:
    request = invite(PLAIN + b";rport")
    ours = "SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKours"
    request.prepend_via(ours, parse_via(ours))
    return request


def answer_to(request: Request) -> Response:
    response = parse_message(make_response(request, 180).to_bytes())
    assert isinstance(response, Response)
    return response


def test_a_response_pops_the_via_its_request_was_sent_with_unparsed() -> None:
    sent = sent_with_our_via()
    response = answer_to(sent)
    assert response.pop_via(sent) is sent.top_via
    assert response.top_via == sent.vias[1]
    assert response.vias == sent.vias[1:]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (b";branch=z9hG4bKours", b";branch=z9hG4bKours;received=203.0.113.9"),  # a NAT noted
        (b"Via: SIP/2.0/UDP 198.51.100.1:5060;", b"v: SIP/2.0/UDP 198.51.100.1:5060;"),
        (b";branch=z9hG4bKours", b";branch=z9hG4bKours, SIP/2.0/UDP 10.0.0.7;branch=z9hG4bKa"),
    ],
)
def test_a_top_via_not_as_sent_is_parsed_as_it_came(ours: bytes, theirs: bytes) -> None:
    sent = sent_with_our_via()
    data = make_response(sent, 180).to_bytes().replace(ours, theirs, 1)
    response = parse_message(data)
    assert isinstance(response, Response)
    popped = response.pop_via(sent)
    assert popped is not sent.top_via
    assert popped == parse_message(data).top_via


def test_a_response_without_a_via_still_says_so() -> None:
    sent = sent_with_our_via()
    response = answer_to(sent)
    response.remove_header("via")
    with pytest.raises(SipParseError, match="missing Via"):
        response.pop_via(sent)
