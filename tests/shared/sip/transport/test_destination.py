"""Where messages go: responses by RFC 3261 §18.2.2 and RFC 3581 §4, requests by their URI."""

from __future__ import annotations

import pytest

from shared.sip.transport.destination import Destination, destination_of, response_destination
from shared.sip.uri import parse_uri
from shared.sip.via import parse_via


def destination(via: str, **kw: object) -> Destination:
    return response_destination(parse_via(via), **kw)  # type: ignore[arg-type]


def test_udp_goes_to_sent_by_with_default_port() -> None:
    assert destination("SIP/2.0/UDP pc33.example.com;branch=z9hG4bK1") == Destination(
        "udp", "pc33.example.com", 5060
    )


def test_udp_received_replaces_the_host_but_keeps_the_sent_by_port() -> None:
    via = "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;received=203.0.113.9"
    assert destination(via) == Destination("udp", "203.0.113.9", 5070)


def test_rport_with_received_sends_to_the_observed_address_and_port() -> None:
    via = "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;received=203.0.113.9;rport=40123"
    assert destination(via) == Destination("udp", "203.0.113.9", 40123)


def test_source_address_stands_in_for_unstamped_rport() -> None:
    via = "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;rport"
    assert destination(via, source=("203.0.113.9", 40123)) == Destination(
        "udp", "203.0.113.9", 40123
    )


def test_source_without_rport_keeps_the_sent_by_port() -> None:
    via = "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1"
    assert destination(via, source=("203.0.113.9", 40123)) == Destination(
        "udp", "203.0.113.9", 5070
    )


def test_maddr_wins_on_udp() -> None:
    via = "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1;maddr=239.255.255.1;ttl=1;received=1.2.3.4;rport"
    assert destination(via, source=("1.2.3.4", 9)) == Destination("udp", "239.255.255.1", 5060)


def test_tcp_answers_on_the_connection_and_ignores_maddr() -> None:
    via = "SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1;maddr=239.255.255.1;rport"
    got = destination(via, source=("203.0.113.9", 40123), connection_id=7)
    assert got == Destination("tcp", "203.0.113.9", 40123, connection_id=7)
    assert got.reliable


def test_tcp_without_rport_answers_on_the_connection_and_reconnects_to_sent_by() -> None:
    via = "SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1"
    got = destination(via, source=("203.0.113.9", 40123), connection_id=7)
    assert got == Destination("tcp", "203.0.113.9", 40123, connection_id=7)
    assert got.reconnect_port == 5070
    assert destination(via, source=("203.0.113.9", 40123)) == Destination(
        "tcp", "203.0.113.9", 5070
    )


def test_ipv6_hosts_lose_their_brackets() -> None:
    via = "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK1"
    assert destination(via) == Destination("udp", "2001:db8::9", 5070)
    via = "SIP/2.0/TCP [2001:db8::9];branch=z9hG4bK1;received=[2001:db8::10]"
    assert destination(via) == Destination("tcp", "2001:db8::10", 5060)


def test_tls_defaults_to_5061() -> None:
    assert destination("SIP/2.0/TLS example.com;branch=z9hG4bK1").port == 5061


@pytest.mark.parametrize(
    "uri, expected",
    [
        ("sips:gw.example.net", Destination("tls", "gw.example.net", 5061)),
        ("sip:10.0.0.1;transport=tls", Destination("tls", "10.0.0.1", 5061)),
        ("sips:10.0.0.1:5071;transport=tcp", Destination("tls", "10.0.0.1", 5071)),
        ("sip:[2001:db8::1]:5062;transport=TLS", Destination("tls", "2001:db8::1", 5062)),
    ],
)
def test_a_sips_uri_or_transport_tls_goes_over_tls(uri: str, expected: Destination) -> None:
    assert destination_of(parse_uri(uri)) == expected


def test_a_websocket_request_is_answered_where_it_came_from_whatever_its_via_says() -> None:
    """RFC 7118 §5: a browser's Via names an `.invalid` host and no port or rport."""
    via = "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK1"
    answer = destination(via, source=("198.51.100.4", 51000), connection_id=7)
    assert answer == Destination("wss", "198.51.100.4", 51000, 7)


def test_a_websocket_contact_is_a_destination_reached_by_its_flow_only() -> None:
    """Its host is not to be reached, but the URI is valid: the binding's flow is used."""
    uri = parse_uri("sip:alice@df7jal23ls0d.invalid;transport=ws")
    assert destination_of(uri) == Destination("ws", "df7jal23ls0d.invalid", 5060, pinned=True)
