"""Address ACLs: which peers are trusted (carriers, Asterisk boxes) by network, port and transport.

Entries are written `[transport:]network[:port]`, IPv6 with a port in
brackets: `198.51.100.0/24`, `udp:198.51.100.7:5060`, `2001:db8::/32`,
`tcp:[2001:db8::7]:5060`; the `CALLMESH_TRUSTED_NETWORKS` syntax (plain
CIDRs, comma-separated) is a subset.  A bare address means /32 or /128.

Lookup is per packet, so addresses are turned into integers once (a small
memo, cleared when full so spoofed sources cannot grow it) and matched by
one dict probe per distinct prefix length, longest first.  IPv4-mapped IPv6
sources (`::ffff:192.0.2.1`, from dual-stack sockets) match IPv4 entries.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

_TRANSPORTS: Final = ("udp", "tcp", "tls", "ws", "wss")
_MEMO_LIMIT: Final = 4096
_MAPPED_PREFIX: Final = 0xFFFF << 32
WIDE_TRUST: Final = {4: 8, 6: 32}
"""The shortest prefix (by IP version) a trusted network may have unless the operator says
in so many words that it is meant: a network of an operator's own, not a share of the Internet."""


@dataclass(frozen=True, slots=True)
class AclEntry:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None
    transport: str | None = None

    @classmethod
    def parse(cls, text: str) -> AclEntry:
        """One entry; raises ValueError naming the entry when it is malformed."""
        rest = text.strip()
        transport = None
        head, colon, tail = rest.partition(":")
        if colon and head.lower() in _TRANSPORTS:
            transport, rest = head.lower(), tail
        port_text = None
        if rest.startswith("["):
            network_text, bracket, after = rest[1:].partition("]")
            if not bracket or (after and not after.startswith(":")):
                raise ValueError(f"ACL entry {text!r}: malformed [IPv6] reference")
            port_text = after[1:] or None
        elif rest.count(":") == 1:
            network_text, _, port_text = rest.partition(":")
        else:
            network_text = rest
        try:
            network = ipaddress.ip_network(network_text, strict=False)
        except ValueError as error:
            raise ValueError(f"ACL entry {text!r}: {error}") from None
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
                raise ValueError(f"ACL entry {text!r}: bad port")
            port = int(port_text)
        return cls(network, port, transport)

    def allows(self, port: int, transport: str) -> bool:
        return (self.port is None or self.port == port) and (
            self.transport is None or self.transport == transport
        )

    def __str__(self) -> str:
        network = str(self.network)
        if self.port is not None:
            network = (
                f"[{network}]:{self.port}"
                if self.network.version == 6
                else f"{network}:{self.port}"
            )
        return network if self.transport is None else f"{self.transport}:{network}"


def parse_acl(text: str) -> list[AclEntry]:
    """A comma-separated list of entries (the setting's form)."""
    return [AclEntry.parse(item) for item in text.split(",") if item.strip()]


def wider_than_trust(entry: AclEntry) -> str | None:
    """Why trusting ``entry`` lets a share of the Internet call without digest (None: it does not).

    Why ask: `0.0.0.0/0`, or a typo such as `198.51.100.7/0` that `strict=False` reads as the
    same, would let every source call for free (toll fraud), silently."""
    shortest = WIDE_TRUST[entry.network.version]
    if entry.network.prefixlen >= shortest:
        return None
    return f"{entry} is wider than a /{shortest}: every source in it would call without digest"


def parse_trusted_networks(text: str) -> list[AclEntry]:
    """`CALLMESH_TRUSTED_NETWORKS`: `parse_acl`, refusing a network wider than `WIDE_TRUST`
    (a wider trust is a peer of the routing table with `trust_wide_networks`)."""
    entries = parse_acl(text)
    for entry in entries:
        reason = wider_than_trust(entry)
        if reason is not None:
            raise ValueError(f"{reason}; trust it through /v1/peers with trust_wide_networks")
    return entries


def parse_network_profiles(text: str) -> list[tuple[list[AclEntry], str, str | None]]:
    """``;``-separated ``networks=group[/dialplan]`` (``CALLMESH_CALLER_PROFILES``), in
    order; ValueError naming the item that is malformed."""
    profiles: list[tuple[list[AclEntry], str, str | None]] = []
    for item in text.split(";"):
        if not item.strip():
            continue
        networks, equals, target = item.rpartition("=")
        group, _, dialplan = target.strip().partition("/")
        if not equals or not networks.strip() or not group:
            raise ValueError(f"caller profile {item.strip()!r}: want networks=group[/dialplan]")
        profiles.append((parse_acl(networks), group, dialplan or None))
    return profiles


class AddressAcl:
    """The trusted peers; `match` answers "which entry lets this source in", or None."""

    __slots__ = ("_memo", "_v4", "_v6", "entries")

    def __init__(self, entries: Iterable[AclEntry]) -> None:
        self.entries = tuple(entries)
        tables: dict[int, dict[int, dict[int, list[AclEntry]]]] = {4: {}, 6: {}}
        for entry in self.entries:
            network = entry.network
            bits = network.max_prefixlen
            by_prefix = tables[network.version].setdefault(network.prefixlen, {})
            key = int(network.network_address) >> (bits - network.prefixlen)
            by_prefix.setdefault(key, []).append(entry)
        self._v4 = _longest_first(tables[4], 32)
        self._v6 = _longest_first(tables[6], 128)
        self._memo: dict[str, tuple[int, int] | None] = {}

    @classmethod
    def parse(cls, text: str) -> AddressAcl:
        return cls(parse_acl(text))

    def match(self, host: str, port: int, transport: str = "udp") -> AclEntry | None:
        """The first entry (longest prefix first) covering `host`, `port` and `transport`."""
        address = self._memo.get(host)
        if address is None:
            if host in self._memo:
                return None  # not an IP address
            address = _address_int(host)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[host] = address
            if address is None:
                return None
        version, value = address
        for shift, networks in self._v4 if version == 4 else self._v6:
            entries = networks.get(value >> shift)
            if entries is not None:
                for entry in entries:
                    if entry.allows(port, transport):
                        return entry
        return None

    def trusts(self, host: str, port: int, transport: str = "udp") -> bool:
        return self.match(host, port, transport) is not None


def _longest_first(
    by_prefix: dict[int, dict[int, list[AclEntry]]], bits: int
) -> tuple[tuple[int, dict[int, list[AclEntry]]], ...]:
    return tuple((bits - prefix, by_prefix[prefix]) for prefix in sorted(by_prefix, reverse=True))


def _address_int(host: str) -> tuple[int, int] | None:
    """(4 or 6, the address as an integer); None when `host` is not an IP literal."""
    host = host.strip("[]")
    try:
        if ":" not in host:
            return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
        value = int.from_bytes(socket.inet_pton(socket.AF_INET6, host.partition("%")[0]), "big")
    except OSError:
        return None
    if value >> 32 == _MAPPED_PREFIX >> 32:
        return 4, value & 0xFFFFFFFF
    return 6, value
