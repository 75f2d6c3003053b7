"""Which sources the edge trusts: they may call out without a 407 challenge.

Trusted are the networks of ``CALLMESH_TRUSTED_NETWORKS`` and the hosts of
the gateways in the routing table (carriers do not answer digest
challenges).  Asked for every new dialog from outside, so answers are
memoised per host, and the gateway hosts recomputed only when the routing
table's version moves.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from services.edge.routing_cache import RoutingCache
from shared.sip.errors import SipError
from shared.sip.transport.destination import Destination, unbracket
from shared.sip.uri import SipUri, parse_uri

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_MEMO = 65536


class SourceTrust:
    def __init__(self, networks: Sequence[Network], cache: RoutingCache) -> None:
        self._networks = tuple(networks)
        self._cache = cache
        self._version: int | None = None
        self._gateway_hosts: frozenset[str] = frozenset()
        self._memo: dict[str, bool] = {}

    def __call__(self, source: Destination) -> bool:
        if self._version != self._cache.version:
            self._version = self._cache.version
            self._gateway_hosts = gateway_hosts(self._cache)
            self._memo.clear()
        host = source.host
        known = self._memo.get(host)
        if known is None:
            known = host in self._gateway_hosts or in_networks(host, self._networks)
            if len(self._memo) >= MAX_MEMO:
                self._memo.clear()
            self._memo[host] = known
        return known


def in_networks(host: str, networks: Sequence[Network]) -> bool:
    try:
        address = ipaddress.ip_address(unbracket(host))
    except ValueError:
        return False
    return any(address in network for network in networks)


def gateway_hosts(cache: RoutingCache) -> frozenset[str]:
    hosts = set()
    for gateway in cache.index.gateways.values():
        try:
            uri = parse_uri(gateway.address)
        except SipError:
            continue
        if isinstance(uri, SipUri):
            hosts.add(unbracket(uri.param("maddr") or uri.host))
    return frozenset(hosts)
