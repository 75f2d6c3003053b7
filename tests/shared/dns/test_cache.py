"""The DNS cache: TTLs clamped, negative and failed answers kept, refresh ahead of expiry."""

from __future__ import annotations

from shared.dns.cache import CacheLimits, DnsCache, record_key

KEY = record_key("Carrier.Test.", "A")


def test_names_are_keyed_without_case_or_trailing_dot() -> None:
    assert KEY == ("carrier.test", "A")


def test_an_answer_holds_for_its_ttl() -> None:
    cache = DnsCache()
    cache.put(KEY, ("192.0.2.1",), 10, now=100.0)
    assert cache.get(KEY, 109.9) is not None
    assert cache.get(KEY, 110.0) is None


def test_ttl_clamped_both_ways() -> None:
    cache = DnsCache(CacheLimits(min_ttl=2, max_ttl=60))
    assert cache.put(KEY, ("192.0.2.1",), 0, now=0).ttl == 2
    assert cache.put(KEY, ("192.0.2.1",), 86400, now=0).ttl == 60


def test_negative_answers_are_cached_with_their_reason() -> None:
    cache = DnsCache(CacheLimits(negative_ttl=30, failure_ttl=5))
    assert cache.put(KEY, (), None, now=0, reason="no such name").ttl == 30
    entry = cache.get(KEY, 29)
    assert entry is not None
    assert (entry.records, entry.reason) == ((), "no such name")
    assert cache.put(KEY, (), None, now=0, reason="timeout", failed=True).ttl == 5
    assert cache.put(KEY, (), 7, now=0).ttl == 7  # the SOA minimum when the server gave one


def test_only_entries_in_use_become_due_and_once() -> None:
    cache = DnsCache(CacheLimits(refresh_at=0.75))
    used, idle = record_key("used.test", "A"), record_key("idle.test", "A")
    cache.put(used, ("192.0.2.1",), 100, now=0)
    cache.put(idle, ("192.0.2.2",), 100, now=0)
    assert cache.next_due() is None
    cache.get(used, 10)
    assert cache.next_due() == 75
    assert cache.due(74) == []
    assert cache.due(75) == [used]
    assert cache.due(76) == []  # being refreshed
    cache.put(used, ("192.0.2.9",), 100, now=80)  # the refresh's answer
    assert cache.due(170) == []  # not read since
    cache.get(used, 171)
    assert cache.due(171) == [used]


def test_full_cache_drops_expired_then_oldest() -> None:
    cache = DnsCache(CacheLimits(max_entries=4))
    for i in range(4):
        cache.put(record_key(f"h{i}.test", "A"), ("192.0.2.1",), 10 + i, now=float(i))
    cache.put(record_key("new.test", "A"), ("192.0.2.1",), 10, now=100)
    assert len(cache) <= 4
    assert cache.get(record_key("new.test", "A"), 100) is not None
