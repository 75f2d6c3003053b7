"""Which sources the edge trusts: they may call out without a 407 challenge.

Trusted are the routing table's trusted peers (``/v1/peers``: the longest
address covering the source, :mod:`shared.routing_table.peers`), the entries of
``CALLMESH_TRUSTED_NETWORKS`` (network, and optionally transport and port:
:mod:`shared.acl`; a bootstrap beside the peers) and the gateways
of the routing table (carriers do not answer digest challenges): a gateway
address with a port trusts that host and port only (phones may share a host
with a gateway behind one NAT), one without a port trusts the whole host.
Asked for every new dialog from outside, so answers are memoised per
address, and the gateways recomputed only when the routing table's version
moves.
"""

from __future__ import annotations

from typing import Final

from shared.acl import AddressAcl
from shared.routing_table.cache import RoutingCache
from shared.sip.errors import SipError
from shared.sip.transport.destination import Destination, unbracket
from shared.sip.uri import SipUri, parse_uri

MAX_MEMO: Final = 65536


class SourceTrust:
    def __init__(self, acl: AddressAcl, cache: RoutingCache) -> None:
        self._acl = acl
        self._cache = cache
        self._version: int | None = None
        self._gateways: frozenset[tuple[str, int | None]] = frozenset()
        self._memo: dict[tuple[str, int, str], bool] = {}

    def __call__(self, source: Destination) -> bool:
        if self._version != self._cache.version:
            self._version = self._cache.version
            self._gateways = gateway_addresses(self._cache)
            self._memo.clear()
        key = (source.host, source.port, source.transport)
        known = self._memo.get(key)
        if known is None:
            known = (
                source.address in self._gateways
                or (source.host, None) in self._gateways
                or self._acl.match(source.host, source.port, source.transport) is not None
                or self._cache.index.peers.trusts(source.host, source.port, source.transport)
            )
            if len(self._memo) >= MAX_MEMO:
                self._memo.clear()
            self._memo[key] = known
        return known


def gateway_addresses(cache: RoutingCache) -> frozenset[tuple[str, int | None]]:
    """(host, port) of every gateway; port None when its address gives none."""
    found: set[tuple[str, int | None]] = set()
    for gateway in cache.index.gateways.values():
        try:
            uri = parse_uri(gateway.address)
        except SipError:
            continue
        if isinstance(uri, SipUri):
            found.add((unbracket(uri.param("maddr") or uri.host), uri.port))
    return frozenset(found)
