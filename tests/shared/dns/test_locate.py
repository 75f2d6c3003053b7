"""RFC 3263 §4 on a filled cache: transport choice, ports, NAPTR → SRV → A/AAAA, what is missing."""

from __future__ import annotations

import random

import pytest

from shared.dns.cache import DnsCache, Record, record_key
from shared.dns.locate import Located, NameSpec, NeedRecords, locate
from shared.dns.records import Naptr, Srv


def cache_with(records: dict[tuple[str, str], tuple[Record, ...]]) -> DnsCache:
    cache = DnsCache()
    for (name, rtype), found in records.items():
        cache.put(record_key(name, rtype), found, 60, now=0)
    return cache


CARRIER: dict[tuple[str, str], tuple[Record, ...]] = {
    ("carrier.test", "NAPTR"): (
        Naptr(10, 20, "S", "SIP+D2U", "_sip._udp.carrier.test."),
        Naptr(10, 10, "S", "SIP+D2T", "_sip._tcp.carrier.test."),
        Naptr(5, 10, "S", "SIP+D2X", "_sip._x.carrier.test."),  # no such transport
    ),
    ("_sip._tcp.carrier.test", "SRV"): (
        Srv(10, 1, 5071, "a.carrier.test."),
        Srv(20, 1, 5073, "c.carrier.test."),
    ),
    ("_sip._udp.carrier.test", "SRV"): (Srv(10, 1, 5081, "a.carrier.test."),),
    ("a.carrier.test", "A"): ("192.0.2.1",),
    ("a.carrier.test", "AAAA"): ("2001:db8::1",),
    ("c.carrier.test", "A"): ("192.0.2.3",),
    ("c.carrier.test", "AAAA"): (),
}


def run(
    cache: DnsCache, spec: NameSpec, transports: frozenset[str] = frozenset({"udp", "tcp"})
) -> Located:
    return locate(cache, spec, 1.0, random.Random(0), transports)


def test_an_ip_literal_needs_no_dns() -> None:
    located = run(DnsCache(), NameSpec("192.0.2.7"))
    assert [(t.address, t.port, t.transport) for t in located.targets] == [
        ("192.0.2.7", 5060, "udp")
    ]
    sips = run(DnsCache(), NameSpec("192.0.2.7", secure=True), frozenset({"udp", "tcp", "tls"}))
    assert (sips.targets[0].port, sips.targets[0].transport) == (5061, "tls")


def test_a_sips_name_is_never_sent_over_plain_tcp_by_default() -> None:
    """The edge speaks TLS outbound, so by default a `sips:` name's targets are TLS ones."""
    cache = cache_with(
        {
            ("secure.test", "NAPTR"): (),
            ("_sips._tcp.secure.test", "SRV"): (),
            ("secure.test", "A"): ("192.0.2.9",),
            ("secure.test", "AAAA"): (),
        }
    )
    located = locate(cache, NameSpec("secure.test", secure=True), 1.0, random.Random(0))
    assert [(t.address, t.port, t.transport) for t in located.targets] == [
        ("192.0.2.9", 5061, "tls")
    ]


def test_naptr_picks_the_most_preferred_transport_we_speak() -> None:
    located = run(cache_with(CARRIER), NameSpec("carrier.test"))
    assert [(t.address, t.port, t.transport, t.priority) for t in located.targets] == [
        ("192.0.2.1", 5071, "tcp", 10),
        ("2001:db8::1", 5071, "tcp", 10),
        ("192.0.2.3", 5073, "tcp", 20),
    ]
    assert located.targets[0].label == "tcp:a.carrier.test:5071"


def test_naptr_without_a_transport_we_speak_is_passed_over() -> None:
    located = run(cache_with(CARRIER), NameSpec("carrier.test"), frozenset({"udp"}))
    assert [(t.port, t.transport) for t in located.targets] == [(5081, "udp"), (5081, "udp")]


def test_an_explicit_transport_skips_naptr() -> None:
    located = run(cache_with(CARRIER), NameSpec("carrier.test", transport="udp"))
    assert {t.port for t in located.targets} == {5081}


def test_an_explicit_port_means_addresses_only() -> None:
    located = run(cache_with(CARRIER), NameSpec("a.carrier.test", port=5999))
    assert [(t.address, t.port, t.transport) for t in located.targets] == [
        ("192.0.2.1", 5999, "udp"),
        ("2001:db8::1", 5999, "udp"),
    ]


def test_no_naptr_tries_srv_per_transport_then_addresses() -> None:
    cache = cache_with(
        {
            ("plain.test", "NAPTR"): (),
            ("_sip._udp.plain.test", "SRV"): (),
            ("_sip._tcp.plain.test", "SRV"): (Srv(0, 0, 5090, "a.carrier.test."),),
            ("a.carrier.test", "A"): ("192.0.2.1",),
            ("a.carrier.test", "AAAA"): (),
        }
    )
    assert [(t.port, t.transport) for t in run(cache, NameSpec("plain.test")).targets] == [
        (5090, "tcp")
    ]
    bare = cache_with(
        {
            ("bare.test", "NAPTR"): (),
            ("_sip._udp.bare.test", "SRV"): (),
            ("_sip._tcp.bare.test", "SRV"): (),
            ("bare.test", "A"): ("192.0.2.9",),
            ("bare.test", "AAAA"): (),
        }
    )
    assert [(t.port, t.transport) for t in run(bare, NameSpec("bare.test")).targets] == [
        (5060, "udp")
    ]


def test_what_is_missing_is_named_a_whole_step_at_once() -> None:
    cache = DnsCache()
    with pytest.raises(NeedRecords) as need:
        run(cache, NameSpec("carrier.test"))
    assert need.value.keys == [("carrier.test", "NAPTR")]
    partial = dict(CARRIER)
    for key in [k for k in partial if k[1] in ("A", "AAAA")]:
        del partial[key]
    with pytest.raises(NeedRecords) as need:
        run(cache_with(partial), NameSpec("carrier.test"))
    assert set(need.value.keys) == {
        ("a.carrier.test", "A"),
        ("a.carrier.test", "AAAA"),
        ("c.carrier.test", "A"),
        ("c.carrier.test", "AAAA"),
    }


def test_unresolvable_says_why() -> None:
    cache = DnsCache()
    for key in [
        ("gone.test", "NAPTR"),
        ("_sip._udp.gone.test", "SRV"),
        ("_sip._tcp.gone.test", "SRV"),
    ]:
        cache.put(key, (), None, now=0, reason="no such name")
    cache.put(("gone.test", "A"), (), None, now=0, reason="no such name")
    cache.put(("gone.test", "AAAA"), (), None, now=0, reason="no such name")
    located = run(cache, NameSpec("gone.test"))
    assert located.targets == []
    assert "gone.test" in located.reason


def test_an_expired_answer_is_asked_again() -> None:
    cache = DnsCache()
    cache.put(("x.test", "A"), ("192.0.2.1",), 5, now=0)
    cache.put(("x.test", "AAAA"), (), 5, now=0)
    assert run(cache, NameSpec("x.test", port=5060)).targets
    with pytest.raises(NeedRecords):
        locate(cache, NameSpec("x.test", port=5060), 6.0, random.Random(0))
