"""The service's wiring helpers: advertised address parsing and interfaces from bound sockets."""

from __future__ import annotations

from services.edge.runtime.sockets import BoundSocket
from services.edge.runtime.startup import interfaces_of, parse_advertise
from shared.sip.transport.base import Listener


def test_parse_advertise_accepts_the_usual_forms() -> None:
    assert parse_advertise("sip.example.com") == ("sip.example.com", None)
    assert parse_advertise("203.0.113.5:5080") == ("203.0.113.5", 5080)
    assert parse_advertise("2001:db8::5") == ("2001:db8::5", None)
    assert parse_advertise("[2001:db8::5]:5080") == ("2001:db8::5", 5080)


def test_interfaces_use_the_advertised_host_and_the_private_via_port() -> None:
    bound = [
        BoundSocket(Listener("udp", "10.0.0.2", 5060), Listener("udp", "10.0.0.2", 41000)),
        BoundSocket(Listener("tcp", "10.0.0.2", 5060), None),
    ]
    udp, tcp = interfaces_of(bound, "203.0.113.5").all
    assert (udp.host, udp.port, udp.via_port) == ("203.0.113.5", 5060, 41000)
    assert (tcp.host, tcp.port, tcp.via_port) == ("203.0.113.5", 5060, 5060)
    interfaces = interfaces_of(bound, "203.0.113.5")
    assert interfaces.is_ours("10.0.0.2", 5060)  # the bound address stays ours too
    assert interfaces.is_ours("203.0.113.5", 41000)


def test_an_advertised_port_replaces_both_ports() -> None:
    bound = [BoundSocket(Listener("udp", "10.0.0.2", 5060), None)]
    [udp] = interfaces_of(bound, "203.0.113.5:5080").all
    assert (udp.port, udp.via_port) == (5080, 5080)
