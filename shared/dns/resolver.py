"""The only part of `shared.dns` that talks to a DNS server: dnspython's async resolver.

It fills a `DnsCache` with what `locate` asks for (all the records of one
step concurrently), each query bounded by `timeout` and a whole resolution
by `timeout` times the few steps RFC 3263 has, so a call that has to wait for a
name waits a bounded time. A query that fails (timeout, SERVFAIL, no
server) is cached as failed for the cache's short failure TTL; during a
refresh it keeps the old answer instead, until that one expires. `refresh`
(run by the owner every `next_due`) asks again for the entries in use
before they expire, so busy names never make a call wait.

Servers: `CALLMESH_DNS_SERVERS` (`host[:port]`, comma-separated), else the
system's (`/etc/resolv.conf`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from shared.dns.cache import CacheLimits, DnsCache, Record, RecordKey
from shared.dns.locate import Located, NameSpec, NeedRecords, locate
from shared.dns.records import Naptr, Srv, order_naptr
from shared.dns.servers import parse_servers
from shared.settings import Settings
from shared.sip.transport.destination import SUPPORTED_TRANSPORTS

__all__ = ["DnsResolver", "parse_servers"]

log = logging.getLogger("callmesh.dns")

MAX_STEPS = 6
"""NAPTR, SRV, addresses, and the retries of a NAPTR list: more is a loop in the records."""
MAX_RECORDS = 16
"""Records kept of one answer (the most preferred NAPTR, the lowest-priority SRV, the first
addresses): a hostile zone's 1,500 SRV targets made one call ask 3,000 A/AAAA queries at
once, and each log its timeout; sixteen hops are more than any failover goes through."""


class DnsResolver:
    """Resolves `NameSpec`s into a shared cache; one per process."""

    def __init__(
        self,
        cache: DnsCache,
        servers: list[tuple[str, int]] | None = None,
        *,
        timeout: float = 2.0,
        transports: frozenset[str] = SUPPORTED_TRANSPORTS,
        clock: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.cache = cache
        self.timeout = timeout
        self.transports = transports
        self.queries = 0
        self.failures = 0
        self._clock = clock
        self._resolver = dns.asyncresolver.Resolver(configure=not servers)
        if servers:
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port) for host, port in servers
            ]
        self._resolver.cache = None  # ours holds the answers, with its own TTL rules
        self._inflight: dict[RecordKey, asyncio.Task[None]] = {}
        self._rng = random.Random()

    @classmethod
    def from_settings(
        cls, settings: Settings, clock: asyncio.AbstractEventLoop | None = None
    ) -> DnsResolver:
        """The resolver `CALLMESH_DNS_…` describe, with a cache of its own."""
        return cls(
            DnsCache(CacheLimits(negative_ttl=settings.dns_negative_ttl)),
            parse_servers(settings.dns_servers),
            timeout=settings.dns_timeout,
            clock=clock,
        )

    def now(self) -> float:
        """The clock the cache's times are on: the event loop's, as the edge's core uses."""
        clock = self._clock
        return clock.time() if clock is not None else time.monotonic()

    async def resolve(self, spec: NameSpec) -> Located:
        """The targets of `spec`, fetching what the cache lacks (bounded in time)."""
        for _ in range(MAX_STEPS):
            try:
                return locate(self.cache, spec, self.now(), self._rng, self.transports)
            except NeedRecords as need:
                await self.fetch(need.keys)
        return Located([], f"{spec.host}: more than {MAX_STEPS} DNS steps")

    async def fetch(self, keys: list[RecordKey]) -> None:
        """Query `keys` concurrently; a key already being asked for is awaited, not asked twice."""
        tasks = []
        for key in keys:
            task = self._inflight.get(key)
            if task is None:
                task = asyncio.get_running_loop().create_task(self._query(key))
                self._inflight[key] = task
                task.add_done_callback(self._landed)
            tasks.append(task)
        await asyncio.gather(*tasks)

    def _landed(self, task: asyncio.Task[None]) -> None:
        for key, running in list(self._inflight.items()):
            if running is task:
                del self._inflight[key]

    async def refresh(self) -> int:
        """Ask again for every entry in use that is due; how many were asked for."""
        keys = self.cache.due(self.now())
        if keys:
            await self.fetch(keys)
        return len(keys)

    async def _query(self, key: RecordKey) -> None:
        name, rtype = key
        self.queries += 1
        try:
            answer = await self._resolver.resolve(
                name + ".", rtype, lifetime=self.timeout, raise_on_no_answer=False, search=False
            )
        except dns.resolver.NXDOMAIN:
            self.cache.put(key, (), None, self.now(), "no such name")
            return
        except (dns.exception.DNSException, OSError) as error:
            self.failures += 1
            reason = "timeout" if isinstance(error, dns.exception.Timeout) else type(error).__name__
            self._failed(key, reason)
            return
        if answer.rrset is None:
            self.cache.put(key, (), _negative_ttl(answer), self.now(), f"no {rtype} records")
            return
        records = _kept(tuple(_record(rdata) for rdata in answer.rrset))
        if len(records) < len(answer.rrset):
            log.warning(
                "DNS %s %s: %d records, the first %d kept",
                rtype,
                name,
                len(answer.rrset),
                MAX_RECORDS,
            )
        self.cache.put(key, records, float(answer.rrset.ttl), self.now())

    def _failed(self, key: RecordKey, reason: str) -> None:
        now = self.now()
        old = self.cache.peek(key)
        if old is not None and old.records and now < old.expires:  # a refresh: keep it
            self.cache.put(key, old.records, old.expires - now, now)
            log.warning(
                "DNS %s %s: %s; the cached answer is kept meanwhile", key[1], key[0], reason
            )
            return
        self.cache.put(key, (), None, now, f"DNS query failed ({reason})", failed=True)
        log.warning("DNS %s %s: %s", key[1], key[0], reason)


def _negative_ttl(answer: dns.resolver.Answer) -> float | None:
    """RFC 2308 §5: the SOA's minimum, bounded by the SOA record's own TTL."""
    for rrset in answer.response.authority:
        if rrset.rdtype == dns.rdatatype.SOA:
            return float(min(rrset.ttl, rrset[0].minimum))
    return None


def _kept(records: tuple[Record, ...]) -> tuple[Record, ...]:
    """The `MAX_RECORDS` an answer is cut to: those `locate` would try first."""
    if len(records) <= MAX_RECORDS:
        return records
    if isinstance(records[0], Naptr):
        return tuple(order_naptr(tuple(r for r in records if isinstance(r, Naptr))))[:MAX_RECORDS]
    if isinstance(records[0], Srv):  # by priority: the weighted draw is among the kept ones
        srvs = sorted((r for r in records if isinstance(r, Srv)), key=lambda r: r.priority)
        return tuple(srvs[:MAX_RECORDS])
    return records[:MAX_RECORDS]


def _record(rdata: object) -> Record:
    rdtype = getattr(rdata, "rdtype", None)
    if rdtype == dns.rdatatype.NAPTR:  # flags and service are any bytes on the wire
        return Naptr(
            rdata.order,  # type: ignore[attr-defined]
            rdata.preference,  # type: ignore[attr-defined]
            rdata.flags.decode("ascii", "replace"),  # type: ignore[attr-defined]
            rdata.service.decode("ascii", "replace"),  # type: ignore[attr-defined]
            str(rdata.replacement),  # type: ignore[attr-defined]
        )
    if rdtype == dns.rdatatype.SRV:
        return Srv(
            rdata.priority,  # type: ignore[attr-defined]
            rdata.weight,  # type: ignore[attr-defined]
            rdata.port,  # type: ignore[attr-defined]
            str(rdata.target),  # type: ignore[attr-defined]
        )
    return str(getattr(rdata, "address", rdata))
