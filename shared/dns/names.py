"""Per call, from memory: a name's targets in the order to try them, the failed ones last.

The edge's proxy core asks `Names.targets` for every gateway or dispatcher
destination given by name. The answer comes from the cache (`locate`); a
target that failed a request (a transport error, a timeout, a failover
status) is held down for `hold` seconds (or its Retry-After) and put after
the others meanwhile, so the next calls go to the next SRV target first —
the failure marks that target only, never the name or the other targets —
and still reach it as a last resort. Sans-IO.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from shared.dns.cache import DnsCache, Entry
from shared.dns.locate import DnsTarget, Located, NameSpec, locate
from shared.dns.records import order_srv
from shared.sip.transport.destination import SUPPORTED_TRANSPORTS

MAX_HELD = 10_000
"""Targets held down at once; past it the oldest marks go (a mark only reorders)."""
MAX_MEMOS = 10_000


@dataclass(frozen=True, slots=True)
class _Memo:
    """A name's answer as long as the cache entries it came from hold and none was replaced:
    a call then only draws the SRV weights again (the chain of lookups is not walked)."""

    located: Located
    entries: tuple[Entry, ...]
    generation: int
    expires: float


class Names:
    def __init__(
        self,
        cache: DnsCache,
        *,
        transports: frozenset[str] = SUPPORTED_TRANSPORTS,
        hold: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.cache = cache
        self.transports = transports
        self.hold = hold
        self._rng = rng or random.Random()
        self._down: dict[str, float] = {}
        self._memos: dict[NameSpec, _Memo] = {}
        self._tls_peers: dict[tuple[str, int], str] = {}
        """A TLS target's (address, port) → the name it is a target of (`tls_name`)."""

    def targets(self, spec: NameSpec, now: float) -> Located:
        """`spec`'s targets, those held down last; `NeedRecords` when the cache lacks some."""
        located = self._located(spec, now)
        down = self._down
        if not down or not located.targets:
            return located
        fine = []
        held = []
        for target in located.targets:
            until = down.get(target.label)
            if until is None:
                fine.append(target)
            elif now >= until:
                del down[target.label]
                fine.append(target)
            else:
                held.append(target)
        return Located(fine + held, located.reason) if held else located

    def _located(self, spec: NameSpec, now: float) -> Located:
        cache = self.cache
        memo = self._memos.get(spec)
        if memo is not None and memo.generation == cache.generation and now < memo.expires:
            for entry in memo.entries:
                entry.used = True  # as a read of the cache would: refreshed ahead of expiry
            by_srv = memo.located.by_srv
            if not by_srv:
                return memo.located
            found = {id(srv): targets for srv, targets in by_srv}
            order = order_srv(tuple(srv for srv, _targets in by_srv), self._rng)
            ordered: list[DnsTarget] = [t for srv in order for t in found[id(srv)]]
            return Located(ordered, by_srv=by_srv)
        read: list[Entry] = []
        located = locate(cache, spec, now, self._rng, self.transports, read=read)
        if located.targets and read:
            if len(self._memos) >= MAX_MEMOS or len(self._tls_peers) >= MAX_MEMOS:
                self._memos.clear()  # each memo's TLS targets are noted again with it
                self._tls_peers.clear()
            for target in located.targets:
                if target.transport == "tls":
                    self._tls_peers[target.address, target.port] = spec.host
            expires = min(entry.expires for entry in read)
            self._memos[spec] = _Memo(located, tuple(read), cache.generation, expires)
        return located

    def tls_name(self, peer: tuple[str, int]) -> str | None:
        """The name whose TLS target `peer` (address, port) is: the certificate is checked
        against it (`shared.sip.transport.tls_peers`), as the address alone names nothing."""
        return self._tls_peers.get(peer)

    def failed(self, label: str, now: float, retry_after: float | None = None) -> float:
        """The target `label` (`DnsTarget.label`) failed a request: hold it down; for how long."""
        if len(self._down) >= MAX_HELD:
            del self._down[next(iter(self._down))]
        hold = retry_after if retry_after else self.hold
        self._down[label] = now + hold
        return hold

    def held(self, now: float) -> dict[str, float]:
        """The targets held down now, with the time each is released (for metrics and tests)."""
        return {label: until for label, until in self._down.items() if until > now}
