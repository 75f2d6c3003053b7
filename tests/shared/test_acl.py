"""Trusted-peer ACLs: networks, ports, transports, IPv4 and IPv6."""

from __future__ import annotations

import pytest

from services.edge.protection import ProtectionSettings
from shared.acl import AclEntry, AddressAcl

ACL = AddressAcl.parse(
    "198.51.100.0/24, udp:203.0.113.7:5060, tcp:[2001:db8::7]:5061, 2001:db8:1::/48, 192.0.2.9"
)


@pytest.mark.parametrize(
    ("host", "port", "transport", "trusted"),
    [
        ("198.51.100.1", 5060, "udp", True),
        ("198.51.100.254", 40000, "tcp", True),
        ("198.51.101.1", 5060, "udp", False),
        ("203.0.113.7", 5060, "udp", True),
        ("203.0.113.7", 5062, "udp", False),
        ("203.0.113.7", 5060, "tcp", False),
        ("2001:db8::7", 5061, "tcp", True),
        ("[2001:db8::7]", 5061, "tcp", True),
        ("2001:db8::7", 5061, "udp", False),
        ("2001:db8:1:ffff::1", 5060, "udp", True),
        ("2001:db8:2::1", 5060, "udp", False),
        ("::ffff:198.51.100.3", 5060, "udp", True),
        ("192.0.2.9", 5060, "udp", True),
        ("192.0.2.10", 5060, "udp", False),
        ("edge.example.com", 5060, "udp", False),
        ("", 5060, "udp", False),
    ],
)
def test_trust_by_network_port_and_transport(
    host: str, port: int, transport: str, trusted: bool
) -> None:
    assert ACL.trusts(host, port, transport) is trusted
    assert ACL.trusts(host, port, transport) is trusted  # memoised path


def test_longest_prefix_wins() -> None:
    acl = AddressAcl.parse("10.0.0.0/8:5060, 10.1.0.0/16")
    entry = acl.match("10.1.2.3", 9999, "udp")
    assert entry is not None
    assert str(entry.network) == "10.1.0.0/16"
    assert acl.match("10.2.0.1", 9999, "udp") is None
    assert acl.match("10.2.0.1", 5060, "udp") is not None


def test_entries_print_back_in_their_syntax() -> None:
    assert [str(entry) for entry in ACL.entries] == [
        "198.51.100.0/24",
        "udp:203.0.113.7/32:5060",
        "tcp:[2001:db8::7/128]:5061",
        "2001:db8:1::/48",
        "192.0.2.9/32",
    ]


@pytest.mark.parametrize(
    "text", ["300.1.1.1/32", "udp:198.51.100.1:99999", "[2001:db8::1", "tcp:", "10.0.0.0/33"]
)
def test_malformed_entries_are_refused_naming_the_entry(text: str) -> None:
    with pytest.raises(ValueError, match="ACL entry"):
        AclEntry.parse(text)


def test_default_settings_trust_loopback_only() -> None:
    acl = ProtectionSettings().acl()
    assert acl.trusts("127.0.0.1", 5060)
    assert acl.trusts("::1", 5060)
    assert not acl.trusts("192.0.2.1", 5060)


def test_memo_stays_bounded_under_spoofed_sources() -> None:
    acl = AddressAcl.parse("198.51.100.0/24")
    for i in range(10_000):
        acl.match(f"10.{i >> 8 & 255}.{i & 255}.1", 5060)
    assert len(acl._memo) <= 4096
