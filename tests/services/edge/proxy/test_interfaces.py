"""Which addresses are the edge's, and what it writes into Via and Record-Route."""

from __future__ import annotations

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
