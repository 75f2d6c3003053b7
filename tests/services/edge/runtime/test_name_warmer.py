"""Gateways' names are in the DNS cache before the first call (dnsmasq on loopback)."""

from __future__ import annotations

import pytest

from services.edge.runtime.name_warmer import NameWarmer
from shared.dns import DnsCache
from shared.dns.cache import record_key
from shared.dns.resolver import DnsResolver
from tests.shared.dns.dnsmasq import Zone, dnsmasq

pytestmark = pytest.mark.integration

ZONE = Zone(
    srv=(("_sip._udp.carrier.test", "a.carrier.test", 5071, 10, 1),),
    hosts=(("a.carrier.test", ("127.0.0.1",)),),
)


async def test_one_pass_caches_every_named_gateway_and_marks_it_in_use() -> None:
    addresses = ["sip:carrier.test;transport=udp", "sip:192.0.2.1:5060", "sip:[bad"]
    with dnsmasq(ZONE) as server:
        resolver = DnsResolver(DnsCache(), [("127.0.0.1", server.port)], timeout=2)
        warmer = NameWarmer(lambda: addresses, resolver)
        await warmer.warm()
        srv = resolver.cache.peek(record_key("_sip._udp.carrier.test", "SRV"))
        assert srv is not None and srv.used  # in use: refreshed ahead of expiry
        assert resolver.cache.peek(record_key("a.carrier.test", "A")) is not None
        asked = resolver.queries
        await warmer.warm()
        assert resolver.queries == asked  # the next passes read the cache
        assert len(resolver.cache) == 3  # SRV, A, AAAA: nothing for the IP or the bad URI
