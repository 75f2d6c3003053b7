"""The answers of DNS queries, each kept for its TTL, refreshed ahead of expiry while in use.

One entry per (name, record type). An empty answer is cached too (negative
caching, RFC 2308): a name that does not exist, has no such record, or whose
server did not answer in time is not asked again on every call. TTLs are
clamped: at least `min_ttl` (a TTL of 0 would put a query on every call) and
at most `max_ttl` (a record changed upstream is followed within that bound).

An entry read since it was fetched becomes *due* once `refresh_at` of its TTL
has passed; the resolver asks again in the background, so the calls that keep
using a name never wait for it. Entries nobody reads simply expire. Sans-IO:
the time is always given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.dns.records import Naptr, Srv

RecordKey = tuple[str, str]
"""(name, type): the name lower-case without its trailing dot; type `NAPTR`, `SRV`, `A`, `AAAA`."""

Record = Naptr | Srv | str
"""A NAPTR, an SRV, or an address (A/AAAA) as text."""


def record_key(name: str, rtype: str) -> RecordKey:
    return (name.rstrip(".").lower(), rtype)


@dataclass(slots=True)
class Entry:
    """One answer: its records (empty: negative), when it was fetched, for how long it holds."""

    records: tuple[Record, ...]
    fetched_at: float
    ttl: float
    reason: str = ""
    """Why it is empty (`no such name`, `no SRV records`, `timeout`…), for logs and the dry run."""
    used: bool = field(default=False)

    @property
    def expires(self) -> float:
        return self.fetched_at + self.ttl


@dataclass(frozen=True, slots=True)
class CacheLimits:
    min_ttl: float = 1.0
    max_ttl: float = 3600.0
    negative_ttl: float = 30.0
    """How long an answer without records is kept when the server gave no SOA minimum."""
    failure_ttl: float = 5.0
    """How long a query that failed (timeout, SERVFAIL) is kept as failed: short, it may pass."""
    refresh_at: float = 0.75
    """The share of its TTL after which an entry in use is refreshed."""
    max_entries: int = 100_000


class DnsCache:
    def __init__(self, limits: CacheLimits | None = None) -> None:
        self.limits = limits or CacheLimits()
        self._entries: dict[RecordKey, Entry] = {}
        self._refreshing: set[RecordKey] = set()
        self.generation = 0
        """Bumped by every `put`: what was computed from the entries may be out of date."""

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: RecordKey, now: float) -> Entry | None:
        """The entry for `key` while it holds (marked as used), else None."""
        entry = self._entries.get(key)
        if entry is None or now >= entry.expires:
            return None
        entry.used = True
        return entry

    def peek(self, key: RecordKey) -> Entry | None:
        """The entry for `key`, expired or not, without marking it used (for the dry run)."""
        return self._entries.get(key)

    def put(
        self,
        key: RecordKey,
        records: tuple[Record, ...],
        ttl: float | None,
        now: float,
        reason: str = "",
        *,
        failed: bool = False,
    ) -> Entry:
        """Store an answer; `ttl` None for an empty one takes the negative TTL (`failed`: the
        failure TTL). A refresh keeps the old entry's `used` mark until it is read again."""
        limits = self.limits
        if failed:
            held = limits.failure_ttl
        elif ttl is None:
            held = limits.negative_ttl
        else:
            held = min(max(ttl, limits.min_ttl), limits.max_ttl)
        entry = Entry(records, now, held, reason)
        self.generation += 1
        self._refreshing.discard(key)
        if key not in self._entries and len(self._entries) >= limits.max_entries:
            self._evict(now)
        self._entries[key] = entry
        return entry

    def due(self, now: float) -> list[RecordKey]:
        """Entries in use whose refresh time has come and that no refresh is running for;
        each is handed out once (until `put` stores its new answer)."""
        share = self.limits.refresh_at
        keys = [
            key
            for key, entry in self._entries.items()
            if entry.used
            and key not in self._refreshing
            and now >= entry.fetched_at + entry.ttl * share
        ]
        self._refreshing.update(keys)
        return keys

    def next_due(self) -> float | None:
        """When the earliest entry in use becomes due (None: nothing in use)."""
        share = self.limits.refresh_at
        times = [
            entry.fetched_at + entry.ttl * share
            for key, entry in self._entries.items()
            if entry.used and key not in self._refreshing
        ]
        return min(times) if times else None

    def _evict(self, now: float) -> None:
        """Full: drop what has expired; if that is not enough, the oldest half."""
        for key in [key for key, entry in self._entries.items() if now >= entry.expires]:
            del self._entries[key]
        if len(self._entries) >= self.limits.max_entries:
            by_age = sorted(self._entries, key=lambda key: self._entries[key].fetched_at)
            for key in by_age[: len(by_age) // 2 + 1]:
                del self._entries[key]
