"""Which addresses are the edge's, and what it writes into Via and Record-Route."""

from __future__ import annotations

import pytest

from services.edge.proxy.interfaces import Interface, Interfaces
from shared.sip.via import parse_via


def test_strings_are_built_for_each_transport_and_family() -> None:
    udp = Interface("udp", "192.0.2.1", 5060, 40000)
    tcp = Interface("tcp", "2001:db8::1", 5070, 5070)
    assert udp.via_prefix == "SIP/2.0/UDP 192.0.2.1:40000;branch="
    assert udp.record_route == "<sip:192.0.2.1:5060;lr>"
    assert tcp.via_prefix == "SIP/2.0/TCP [2001:db8::1]:5070;branch="
    assert tcp.record_route == "<sip:[2001:db8::1]:5070;transport=tcp;lr>"


def test_a_websocket_interface_writes_ws_in_its_record_route_and_wss_in_its_via() -> None:
    """RFC 7118 registers `transport=ws` only; the Via tells a secure WebSocket."""
    wss = Interface("wss", "192.0.2.1", 8443, 8443)
    assert wss.via_prefix == "SIP/2.0/WSS 192.0.2.1:8443;branch="
    assert wss.record_route == "<sip:192.0.2.1:8443;transport=ws;lr>"


def test_other_edges_reach_a_websocket_phone_by_another_interface_of_its_family() -> None:
    udp4 = Interface("udp", "192.0.2.1", 5060, 5060)
    tcp6 = Interface("tcp", "2001:db8::1", 5060, 5060)
    tls4 = Interface("tls", "192.0.2.1", 5061, 5061)
    ws4 = Interface("ws", "192.0.2.1", 8080, 8080)
    ws6 = Interface("wss", "2001:db8::1", 8443, 8443)
    interfaces = Interfaces([udp4, tcp6, ws4, ws6, tls4])
    assert interfaces.for_edges(ws4) == tls4  # TLS first, then TCP, then UDP
    assert interfaces.for_edges(ws6) == tcp6
    assert interfaces.for_edges(udp4) == udp4  # any other transport: itself
    assert Interfaces([ws4]).for_edges(ws4) == ws4  # nothing else: other edges cannot reach it


def test_ours_means_host_and_port_with_the_default_port_filled_in() -> None:
    interfaces = Interfaces(
        [Interface("udp", "192.0.2.1", 5060, 40000)], also_ours=[("10.0.0.1", 5062)]
    )
    assert interfaces.is_ours("192.0.2.1", None)
    assert interfaces.is_ours("192.0.2.1", 40000)
    assert interfaces.is_ours("10.0.0.1", 5062)
    assert not interfaces.is_ours("192.0.2.1", 5061)
    assert not interfaces.is_ours("192.0.2.2", 5060)


def test_outbound_interface_follows_transport_then_family() -> None:
    udp4 = Interface("udp", "192.0.2.1", 5060, 5060)
    tcp4 = Interface("tcp", "192.0.2.1", 5060, 5060)
    udp6 = Interface("udp", "2001:db8::1", 5060, 5060)
    interfaces = Interfaces([udp4, tcp4, udp6])
    assert interfaces.outbound("tcp", "198.51.100.1") == tcp4
    assert interfaces.outbound("udp", "2001:db8::9") == udp6
    assert interfaces.outbound("tcp", "2001:db8::9") == udp6  # no TCPv6: same family wins
    assert interfaces.inbound("tcp", "192.0.2.1", 5060) == tcp4


def test_a_bracketed_ipv6_host_is_written_as_given() -> None:
    tls = Interface("tls", "[2001:db8::1]", 5061, 5061)
    assert tls.via_prefix == "SIP/2.0/TLS [2001:db8::1]:5061;alias;branch="  # RFC 5923
    assert tls.record_route == "<sip:[2001:db8::1]:5061;transport=tls;lr>"
    assert tls.ipv6
    assert not Interface("udp", "192.0.2.1", 5060, 5060).ipv6


def test_a_tls_interface_has_a_sips_record_route_for_sips_requests() -> None:
    tls = Interface("tls", "192.0.2.1", 5061, 5061)
    assert tls.secure_record_route == "<sips:192.0.2.1:5061;lr>"
    tcp = Interface("tcp", "192.0.2.1", 5060, 5060)
    assert tcp.secure_record_route == tcp.record_route  # no sips: without TLS


def test_an_edge_without_interfaces_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one SIP interface"):
        Interfaces([])


def test_ours_ignores_case_and_brackets_and_fills_the_transports_default_port() -> None:
    interfaces = Interfaces(
        [Interface("tls", "2001:DB8::1", 5061, 5061), Interface("udp", "Edge.Example", 5060, 5060)],
        also_ours=[("Bound.Example", 5062)],
    )
    assert interfaces.is_ours("[2001:db8::1]", None, "tls")
    assert not interfaces.is_ours("[2001:db8::1]", None, "udp")  # 5060: not a port of ours there
    assert interfaces.is_ours("edge.example", None)
    assert interfaces.is_ours("EDGE.EXAMPLE", 5060)
    assert interfaces.is_ours("bound.example", 5062)
    assert not interfaces.is_ours("bound.example", None)


def test_outbound_falls_back_to_the_first_of_the_family_then_to_the_first_of_all() -> None:
    tcp4 = Interface("tcp", "192.0.2.1", 5060, 5060)
    tls4 = Interface("tls", "192.0.2.1", 5061, 5061)
    interfaces = Interfaces([tcp4, tls4])
    assert interfaces.outbound("udp", "198.51.100.1") == tcp4
    assert interfaces.outbound("udp", "2001:db8::9") == tcp4  # no IPv6 interface at all


def test_inbound_prefers_the_private_via_port_then_the_shared_port_then_outbound() -> None:
    shared = Interface("udp", "192.0.2.1", 5060, 5060)
    private = Interface("udp", "192.0.2.1", 5060, 40000)
    tcp = Interface("tcp", "192.0.2.1", 5060, 5060)
    interfaces = Interfaces([private, shared, tcp])
    assert interfaces.inbound("udp", "192.0.2.1", 5060) == shared
    assert interfaces.inbound("udp", "192.0.2.1", 40000) == private
    other = Interface("udp", "192.0.2.1", 5062, 5062)
    only_private = Interfaces([other, private, tcp])
    assert only_private.inbound("udp", "192.0.2.1", 5060) == private  # by the shared port
    assert only_private.inbound("tcp", "192.0.2.1", 5070) == tcp  # unknown port: outbound


@pytest.mark.parametrize(
    "interface",
    [
        Interface("udp", "192.0.2.1", 5060, 5060),
        Interface("tcp", "192.0.2.1", 5060, 40000),
        Interface("tls", "2001:db8::1", 5061, 5061),
        Interface("wss", "[2001:db8::1]", 443, 443),
    ],
)
def test_the_via_made_from_its_parts_is_what_its_text_parses_to(interface: Interface) -> None:
    text, via = interface.via("z9hG4bK-1.ab")
    assert text == interface.via_prefix + "z9hG4bK-1.ab"
    assert via == parse_via(text)
    assert str(via) == text
