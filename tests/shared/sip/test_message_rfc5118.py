"""RFC 5118 IPv6 torture messages, in both the archive's LF form and the wire CRLF form."""

from __future__ import annotations

import pytest

from shared.sip.errors import SipParseError
from shared.sip.message import Message, Request, parse_message
from shared.sip.responses import error_response
from shared.sip.uri import SipUri
from tests.shared.sip.torture import rfc5118

ENDINGS = ["lf", "crlf"]


def parsed(name: str, endings: str) -> Message:
    message = parse_message(rfc5118(name, endings))
    message.validate()
    return message


def request_uri(name: str, endings: str) -> SipUri:
    message = parsed(name, endings)
    assert isinstance(message, Request)
    assert isinstance(message.uri, SipUri)
    return message.uri


@pytest.mark.parametrize("endings", ENDINGS)
def test_ipv6_good(endings: str) -> None:
    assert request_uri("ipv6-good", endings) == SipUri("[2001:db8::10]")
    message = parsed("ipv6-good", endings)
    assert message.top_via.host == "[2001:db8::9:1]"
    assert message.contacts[0].uri == SipUri("[2001:db8::1]", "caller")


@pytest.mark.parametrize("endings", ENDINGS)
def test_ipv6_bad_unbracketed_request_uri_is_400(endings: str) -> None:
    data = rfc5118("ipv6-bad", endings)
    with pytest.raises(SipParseError) as caught:
        parsed("ipv6-bad", endings)
    assert (caught.value.status, caught.value.reason) == (400, "malformed port")
    answer = error_response(data, caught.value)
    assert answer is not None and answer.startswith(b"SIP/2.0 400 Bad Request (malformed port)")


@pytest.mark.parametrize("endings", ENDINGS)
def test_port_ambiguous_is_all_address(endings: str) -> None:
    assert request_uri("port-ambiguous", endings) == SipUri("[2001:db8::10:5070]")


@pytest.mark.parametrize("endings", ENDINGS)
def test_port_unambiguous(endings: str) -> None:
    assert request_uri("port-unambiguous", endings) == SipUri("[2001:db8::10]", port=5070)


@pytest.mark.parametrize("endings", ENDINGS)
def test_via_received_without_brackets(endings: str) -> None:
    via = parsed("via-received-param-no-delim", endings).top_via
    assert via.received == "2001:db8::9:255"
    assert via.branch == "z9hG4bKas3"


@pytest.mark.parametrize("endings", ENDINGS)
def test_via_received_with_brackets(endings: str) -> None:
    via = parsed("via-received-param-with-delim", endings).top_via
    assert via.received == "[2001:db8::9:255]"
    assert via.host == "[2001:db8::9:1]"


@pytest.mark.parametrize("endings", ENDINGS)
def test_ipv6_in_sdp_body_is_passed_through(endings: str) -> None:
    message = parsed("ipv6-in-sdp", endings)
    assert b"c=IN IP6 2001:db8::20" in message.body
    assert request_uri("ipv6-in-sdp", endings) == SipUri("[2001:db8::10]", "user")


@pytest.mark.parametrize("endings", ENDINGS)
def test_multiple_ip_families_in_headers(endings: str) -> None:
    vias = parsed("mult-ip-in-header", endings).vias
    assert [(v.host, v.port) for v in vias] == [
        ("[2001:db8::9:1]", 6050),
        ("192.0.2.1", None),
        ("[2001:db8::9:255]", None),
    ]
    assert vias[2].received == "192.0.2.200"


@pytest.mark.parametrize("endings", ENDINGS)
def test_multiple_ip_families_in_sdp(endings: str) -> None:
    message = parsed("mult-ip-in-sdp", endings)
    assert b"IP4" in message.body and b"IP6" in message.body


@pytest.mark.parametrize("endings", ENDINGS)
def test_ipv4_mapped_ipv6(endings: str) -> None:
    message = parsed("ipv4-mapped-ipv6", endings)
    assert [(v.host, v.port) for v in message.vias] == [
        ("[::ffff:192.0.2.10]", 19823),
        ("[::ffff:192.0.2.2]", None),
    ]
    assert message.contacts[0].uri == SipUri("[::ffff:192.0.2.2]", "ted")


@pytest.mark.parametrize("endings", ENDINGS)
def test_ipv6_three_colons_tolerated(endings: str) -> None:
    assert request_uri("ipv6-bug-abnf-3-colons", endings).host == "[2001:db8:::192.0.2.1]"


@pytest.mark.parametrize("endings", ENDINGS)
def test_ipv6_two_colons(endings: str) -> None:
    assert request_uri("ipv6-correct-abnf-2-colons", endings).host == "[2001:db8::192.0.2.1]"


@pytest.mark.parametrize("endings", ENDINGS)
def test_forwarded_bytes_are_crlf_and_reparse(endings: str) -> None:
    message = parsed("ipv6-in-sdp", endings)
    assert isinstance(message, Request)
    message.prepend_via("SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKfwd")
    again = parse_message(message.to_bytes(), stream=True)
    assert again.content_length == len(message.body)
    assert again.top_via.host == "[2001:db8::1]"
    assert again.body == message.body
