"""Which addresses are the edge's, and what it writes into Via and Record-Route."""

from __future__ import annotations

import pytest

from services.edge.proxy.interfaces import Interface, Interfaces


def test_strings_are_built_for_each_transport_and_family() -> None:
    udp = Interface("udp", "192.0.2.1", 5060, 40000)
    tcp = Interface("tcp", "2001:db8::1", 5070, 5070)
    assert udp.via_prefix == "SIP/2.0/UDP 192.0.2.1:40000;branch="
    assert udp.record_route == "<sip:192.0.2.1:5060;lr>"
    assert tcp.via_prefix == "SIP/2.0/TCP [2001:db8::1]:5070;branch="
    assert tcp.record_route == "<sip:[2001:db8::1]:5070;transport=tcp;lr>"


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
    assert tls.via_prefix == "SIP/2.0/TLS [2001:db8::1]:5061;branch="
    assert tls.record_route == "<sip:[2001:db8::1]:5061;transport=tls;lr>"
    assert tls.ipv6
    assert not Interface("udp", "192.0.2.1", 5060, 5060).ipv6


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
