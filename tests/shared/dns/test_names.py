"""A failed DNS target is tried last for a while, the name's other targets untouched."""

from __future__ import annotations

import random

import pytest

from shared.dns import DnsCache, Names, NameSpec, NeedRecords, Srv
from shared.dns.cache import record_key


def carrier() -> DnsCache:
    cache = DnsCache()
    cache.put(
        record_key("_sip._udp.carrier.test", "SRV"),
        (Srv(10, 1, 5071, "a.carrier.test."), Srv(20, 1, 5073, "c.carrier.test.")),
        600,
        now=0,
    )
    for host, address in (("a.carrier.test", "192.0.2.1"), ("c.carrier.test", "192.0.2.3")):
        cache.put(record_key(host, "A"), (address,), 600, now=0)
        cache.put(record_key(host, "AAAA"), (), 600, now=0)
    return cache


SPEC = NameSpec("carrier.test", transport="udp")


def test_a_failed_target_goes_last_until_its_hold_ends() -> None:
    names = Names(carrier(), hold=30, rng=random.Random(0))
    assert [t.port for t in names.targets(SPEC, 1).targets] == [5071, 5073]
    names.failed("udp:a.carrier.test:5071", 1)
    assert [t.port for t in names.targets(SPEC, 2).targets] == [5073, 5071]
    assert [t.port for t in names.targets(SPEC, 31).targets] == [5071, 5073]
    assert names.held(31) == {}


def test_retry_after_sets_the_hold() -> None:
    names = Names(carrier(), hold=30, rng=random.Random(0))
    names.failed("udp:a.carrier.test:5071", 0, retry_after=120)
    assert [t.port for t in names.targets(SPEC, 100).targets] == [5073, 5071]


def test_a_new_answer_replaces_the_remembered_one() -> None:
    cache = carrier()
    names = Names(cache, rng=random.Random(0))
    assert [t.port for t in names.targets(SPEC, 1).targets] == [5071, 5073]
    srv = record_key("_sip._udp.carrier.test", "SRV")
    cache.put(srv, (Srv(10, 1, 5099, "c.carrier.test."),), 600, now=5)  # a refresh's answer
    assert [t.port for t in names.targets(SPEC, 6).targets] == [5099]


def test_a_remembered_answer_keeps_its_records_in_use_and_ends_with_them() -> None:
    cache = carrier()
    names = Names(cache, rng=random.Random(0))
    names.targets(SPEC, 1)
    srv = record_key("_sip._udp.carrier.test", "SRV")
    entry = cache.peek(srv)
    assert entry is not None
    entry.used = False
    names.targets(SPEC, 2)  # from the memo
    assert entry.used  # still refreshed ahead of its expiry
    with pytest.raises(NeedRecords):
        names.targets(SPEC, 601)  # the records ran out: the cache is asked again


def test_a_tls_target_names_the_host_its_certificate_is_checked_against() -> None:
    cache = DnsCache()
    cache.put(
        record_key("_sips._tcp.carrier.test", "SRV"), (Srv(10, 1, 5061, "a.carrier.test."),), 600, 0
    )
    cache.put(record_key("a.carrier.test", "A"), ("192.0.2.1",), 600, now=0)
    cache.put(record_key("a.carrier.test", "AAAA"), (), 600, now=0)
    names = Names(cache, rng=random.Random(0))
    assert names.tls_name(("192.0.2.1", 5061)) is None  # not a target yet
    spec = NameSpec("carrier.test", transport="tls", secure=True)
    assert [t.address for t in names.targets(spec, 1).targets] == ["192.0.2.1"]
    assert names.tls_name(("192.0.2.1", 5061)) == "carrier.test"  # the URI's host (RFC 5922)
