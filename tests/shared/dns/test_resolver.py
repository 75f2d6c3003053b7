"""The async resolver against a real DNS server (dnsmasq on loopback): NAPTR → SRV → A/AAAA,
negative answers, a server that does not answer (bounded), refresh ahead of expiry, TTL changes;
and against a hostile one (`hostile.py`): NAPTR bytes that are not text, a huge SRV set."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace

import dns.rrset
import pytest

from shared.dns import DnsCache, NameSpec
from shared.dns.cache import CacheLimits, record_key
from shared.dns.resolver import MAX_RECORDS, DnsResolver
from tests.shared.dns.dnsmasq import Zone, dnsmasq
from tests.shared.dns.hostile import hostile_dns

pytestmark = pytest.mark.integration

CARRIER = Zone(
    naptr=(("carrier.test", 10, 10, "SIP+D2U", "_sip._udp.carrier.test"),),
    srv=(
        ("_sip._udp.carrier.test", "a.carrier.test", 5071, 10, 1),
        ("_sip._udp.carrier.test", "b.carrier.test", 5072, 10, 3),
        ("_sip._udp.carrier.test", "c.carrier.test", 5073, 20, 1),
    ),
    hosts=(
        ("a.carrier.test", ("127.0.0.1",)),
        ("b.carrier.test", ("127.0.0.1", "::1")),
        ("c.carrier.test", ("127.0.0.1",)),
    ),
    ttl=60,
)


async def test_naptr_srv_and_addresses_from_a_real_server() -> None:
    with dnsmasq(CARRIER) as server:
        resolver = DnsResolver(DnsCache(), [("127.0.0.1", server.port)], timeout=2)
        located = await resolver.resolve(NameSpec("carrier.test"))
        labels = [(t.label, t.address, t.priority) for t in located.targets]
        assert sorted(labels[:3]) == [
            ("udp:a.carrier.test:5071", "127.0.0.1", 10),
            ("udp:b.carrier.test:5072", "127.0.0.1", 10),
            ("udp:b.carrier.test:5072", "::1", 10),
        ]
        assert labels[3] == ("udp:c.carrier.test:5073", "127.0.0.1", 20)
        asked = resolver.queries
        again = await resolver.resolve(NameSpec("carrier.test"))
        assert resolver.queries == asked  # from the cache
        assert {t.label for t in again.targets} == {t.label for t in located.targets}


async def test_weights_spread_the_first_choice() -> None:
    with dnsmasq(CARRIER) as server:
        resolver = DnsResolver(DnsCache(), [("127.0.0.1", server.port)], timeout=2)
        firsts = [
            (await resolver.resolve(NameSpec("carrier.test"))).targets[0].name for _ in range(400)
        ]
        assert abs(firsts.count("b.carrier.test") / 400 - 0.75) < 0.1


async def test_an_unknown_name_is_cached_as_negative_with_its_reason() -> None:
    with dnsmasq(CARRIER) as server:
        resolver = DnsResolver(DnsCache(), [("127.0.0.1", server.port)], timeout=2)
        located = await resolver.resolve(NameSpec("nowhere.test"))
        assert located.targets == []
        assert "no such name" in located.reason
        asked = resolver.queries
        await resolver.resolve(NameSpec("nowhere.test"))
        assert resolver.queries == asked


async def test_a_silent_server_costs_a_bounded_time_and_is_cached_as_failed() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        resolver = DnsResolver(
            DnsCache(CacheLimits(failure_ttl=5)), [("127.0.0.1", port)], timeout=0.3
        )
        started = time.monotonic()
        located = await resolver.resolve(NameSpec("carrier.test", port=5060))
        assert located.targets == []
        assert "timeout" in located.reason
        assert time.monotonic() - started < 3
        entry = resolver.cache.peek(record_key("carrier.test", "A"))
        assert entry is not None and entry.ttl == 5


async def test_a_record_change_is_followed_by_the_refresh_ahead_of_expiry() -> None:
    zone = Zone(
        srv=(("_sip._udp.carrier.test", "a.carrier.test", 5071, 10, 1),),
        hosts=(("a.carrier.test", ("127.0.0.1",)), ("d.carrier.test", ("127.0.0.1",))),
        ttl=2,
    )
    with dnsmasq(zone) as server:
        resolver = DnsResolver(DnsCache(), [("127.0.0.1", server.port)], timeout=2)
        spec = NameSpec("carrier.test", transport="udp")
        assert [t.port for t in (await resolver.resolve(spec)).targets] == [5071]
        moved = Zone(
            srv=(("_sip._udp.carrier.test", "d.carrier.test", 5074, 10, 1),),
            hosts=zone.hosts,
            ttl=2,
        )
        server.restart(moved)
        deadline = time.monotonic() + 10
        ports: list[int] = []
        while time.monotonic() < deadline:
            await resolver.refresh()  # what the edge runs ahead of expiry
            srv = resolver.cache.get(record_key("_sip._udp.carrier.test", "SRV"), resolver.now())
            assert srv is not None, "a name in use never drops out of the cache"
            ports = [t.port for t in (await resolver.resolve(spec)).targets]
            if ports == [5074]:
                break
            await asyncio.sleep(0.1)
        assert ports == [5074]


async def test_a_ttl_change_is_followed_raised_then_lowered() -> None:
    """The zone's TTL raised (2 → 4 s), then lowered (4 → 1 s): each refresh ahead of expiry
    holds the answer for the TTL the server gives now, not the first one seen (the refresh
    time follows from it: `test_cache.py`)."""
    key = record_key("_sip._udp.carrier.test", "SRV")
    zone = Zone(
        srv=(("_sip._udp.carrier.test", "a.carrier.test", 5071, 10, 1),),
        hosts=(("a.carrier.test", ("127.0.0.1",)),),
        ttl=2,
    )
    with dnsmasq(zone) as server:
        resolver = DnsResolver(DnsCache(), [("127.0.0.1", server.port)], timeout=2)
        spec = NameSpec("carrier.test", transport="udp")
        await resolver.resolve(spec)
        assert held_for(resolver, key) == 2
        for ttl in (4, 1):
            server.restart(replace(zone, ttl=ttl))
            deadline = time.monotonic() + 10
            while held_for(resolver, key) != ttl and time.monotonic() < deadline:
                await resolver.resolve(spec)  # a call using the name: it stays in use
                await resolver.refresh()  # what the edge runs ahead of expiry
                await asyncio.sleep(0.1)
            assert held_for(resolver, key) == ttl


def held_for(resolver: DnsResolver, key: tuple[str, str]) -> float | None:
    """The TTL the cache holds `key`'s answer for."""
    entry = resolver.cache.peek(key)
    return None if entry is None else entry.ttl


def _naptr(name: str, flags: str, service: str, replacement: str) -> dns.rrset.RRset:
    """Flags and service in zone-file text, where `\\255` is the byte 0xff."""
    text = f'10 10 "{flags}" "{service}" "" {replacement}'
    return dns.rrset.from_text(name, 60, "IN", "NAPTR", text)


def _hostile_carrier(name: str, rtype: str) -> list[dns.rrset.RRset] | None:
    if (name, rtype) == ("carrier.test", "NAPTR"):
        return [
            _naptr("carrier.test.", "\\255", "SIP+D2U", "_sip._udp.carrier.test."),
            _naptr("carrier.test.", "S", "SIP+D2T\\254", "_sip._tcp.carrier.test."),
            _naptr("carrier.test.", "S", "SIP+D2U", "."),  # a regexp record
        ]
    if (name, rtype) == ("carrier.test", "A"):
        return [dns.rrset.from_text("carrier.test.", 60, "IN", "A", "127.0.0.1")]
    return None


async def test_naptr_fields_that_are_not_text_are_skipped_never_an_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A NAPTR's flags and service are any bytes on the wire: one that was not UTF-8 raised
    out of `resolve`, so the call waiting for it was never resumed."""
    with hostile_dns(_hostile_carrier) as server:
        resolver = DnsResolver(DnsCache(), [("127.0.0.1", server.port)], timeout=2)
        located = await resolver.resolve(NameSpec("carrier.test"))
        # no usable NAPTR: SRV per transport (none), then the name's address on 5060
        assert [(t.address, t.port, t.transport) for t in located.targets] == [
            ("127.0.0.1", 5060, "udp")
        ]
        assert ("", "SRV") not in server.asked  # the "." replacement is no SRV name
        assert not any(record.exc_info for record in caplog.records)


def _thousands_of_targets(name: str, rtype: str) -> list[dns.rrset.RRset] | None:
    if (name, rtype) == ("_sip._udp.big.test", "SRV"):
        best = [f"10 1 5060 best{i}.big.test." for i in range(3)]
        rest = [f"20 1 5060 h{i}.big.test." for i in range(1500)]
        return [dns.rrset.from_text_list(name + ".", 60, "IN", "SRV", rest + best)]
    if rtype == "A" and name.endswith(".big.test"):
        return [dns.rrset.from_text(name + ".", 60, "IN", "A", "127.0.0.1")]
    if rtype == "AAAA" and name.endswith(".big.test"):
        return []
    return None


async def test_a_huge_srv_set_is_cut_to_its_most_preferred_targets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1,503 SRV targets (sent over TCP, too big for UDP) made one resolution ask 3,006
    address queries at once (a log line per timeout); now the 16 most preferred are kept."""
    with hostile_dns(_thousands_of_targets) as server:  # timeout: a bound on a busy machine
        resolver = DnsResolver(DnsCache(), [("127.0.0.1", server.port)], timeout=10)
        located = await resolver.resolve(NameSpec("big.test", transport="udp"))
        names = [t.name for t in located.targets]
        assert len(names) == MAX_RECORDS
        assert sorted(names[:3]) == ["best0.big.test", "best1.big.test", "best2.big.test"]
        assert len(set(server.asked)) == 1 + 2 * MAX_RECORDS  # the SRV (UDP, TCP), A, AAAA
        assert len(resolver.cache) == 1 + 2 * MAX_RECORDS
        kept = [r for r in caplog.records if "records, the first" in r.getMessage()]
        assert len(kept) == 1 and "1503 records" in kept[0].getMessage()
