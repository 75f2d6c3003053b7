"""Per-source flood detection with pike semantics: requests per sampling period per IP.

A source sending more than `limit` requests within one `period` is blocked:
its packets are dropped silently (no answer, so a flood costs us no
responses) for `block_time`, and for as long as it keeps flooding after
that (each period above the limit while blocked extends the block), as pike
keeps a source marked while its density stays high.  Allowlisted (trusted)
sources are never counted.

Simplification of pike, and why: pike keeps a tree of address prefixes so
it can also catch a flood spread over one network; that costs a tree walk
per packet.  Here only single addresses are counted, in one dict probe, and
the rate is a sliding-window estimate from the current and the previous
period (`previous * share of the window still covering it + current`),
which gives pike's smooth decay without a burst allowance at window edges.

Memory is bounded for a spoofed-source flood: at most `max_sources` are
tracked; a new one evicts the least recently seen (every hit moves its
entry to the end, about 0.1 µs, so the source actually flooding is never
the one evicted, however many spoofed ones churn around it).  Blocked
sources live in their own, separately bounded table so a spoofed flood
cannot push a blocked attacker out.

Shared by the cluster (``share``): every worker of every edge counts locally and
hands its new counts to :mod:`services.edge.runtime.flood_share` in batches (`batch`),
which adds them to Redis's per-source windows in one script and brings back the
cluster's windows and the blocks any worker decided (`apply`). A source is blocked
when this worker's view of the cluster (the cluster's window as last read, decayed
by this clock, plus what this worker counted since) passes the limit; the error
bound is in docs/limits.md ("Flood detection across the cluster"). No Redis: each
worker counts on its own, as before.

No clock inside: every call passes `now` (seconds, monotonic).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from typing import Final

from services.edge.protection.flood_settings import FloodSettings
from shared.acl import AddressAcl

SHARE_STEPS: Final = 16
"""A source's new requests a worker holds back from the cluster before it asks for a batch
now: ``limit / SHARE_STEPS`` (at least 1)."""
SHARE_BATCH: Final = 1000
"""Sources per batch at most (a spoofed flood's churn stays counted locally past it)."""


class FloodVerdict(enum.IntEnum):
    ALLOW = 0
    DROP = 1
    """Blocked: drop silently."""
    BLOCKED = 2
    """Newly blocked by this packet: drop it, publish `SourceBlocked`, bump the metric."""


class _Source:
    __slots__ = ("cluster", "cluster_at", "current", "pending", "previous", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.current = 0
        self.previous = 0
        self.pending = 0
        """Requests counted here since the last batch took this source's."""
        self.cluster: _Source | None = None
        """The cluster's window as last read (its start on this clock), or None."""
        self.cluster_at = 0.0


SharedWindow = tuple[int, int, float]
"""One source's window in the cluster, as a batch's answer gives it: the requests of the
previous period, of the current one, and how far into the current one it is (s)."""


class FloodDetector:
    """Counts requests per source IP; `check` is O(1) per packet."""

    __slots__ = (
        "_allow",
        "_batch",
        "_blocked",
        "_fresh",
        "_sources",
        "_step",
        "_unannounced",
        "allowlist",
        "on_due",
        "settings",
        "shared",
    )

    def __init__(self, settings: FloodSettings, allow: AddressAcl | None = None) -> None:
        self.settings = settings
        self._allow = allow
        self.allowlist: AddressAcl | None = None
        """The operator's allow-list (``/v1/protection/allowlist``), never counted either."""
        self._sources: dict[str, _Source] = {}
        self._blocked: dict[str, float] = {}
        self.shared = False
        self.on_due: Callable[[], None] = _no_hurry
        """Called when a batch should go now rather than at the next interval."""
        self._batch: dict[str, _Source] = {}
        self._step = max(1, math.ceil(settings.limit / SHARE_STEPS))
        self._fresh = 0.0
        self._unannounced: set[str] = set()
        """Sources whose cluster-wide block our batch started while we had not blocked them:
        their next request says BLOCKED (one event, one log line for the cluster's block)."""

    def share(self, interval: float) -> None:
        """Count with the cluster: batches every `interval` s (a view older than two is
        not used: that worker's Redis was away)."""
        self.shared = True
        self._fresh = 2 * interval

    def check(self, host: str, now: float, port: int = 0, transport: str = "udp") -> FloodVerdict:
        """Count one request from `host` and say what to do with it."""
        blocked_until = self._blocked.get(host)
        if blocked_until is not None:
            if now < blocked_until:
                if self._count(host, now) > self.settings.limit:
                    self._block(host, now)  # still flooding: the block goes on
                if self._unannounced and host in self._unannounced:
                    self._unannounced.discard(host)  # our batch started the cluster's block
                    return FloodVerdict.BLOCKED
                return FloodVerdict.DROP
            del self._blocked[host]
        elif host not in self._sources and self._exempt(host, port, transport):
            return FloodVerdict.ALLOW
        if self._count(host, now) > self.settings.limit:
            self._block(host, now)
            self.on_due()  # the other workers learn it from the next batch
            return FloodVerdict.BLOCKED
        return FloodVerdict.ALLOW

    def _exempt(self, host: str, port: int, transport: str) -> bool:
        allow, allowlist = self._allow, self.allowlist
        return (allow is not None and allow.trusts(host, port, transport)) or (
            allowlist is not None and allowlist.trusts(host, port, transport)
        )

    def set_allowlist(self, allowlist: AddressAcl | None) -> None:
        """Take the operator's allow-list; its sources are forgotten (and never counted again)."""
        self.allowlist = allowlist
        if allowlist is None:
            return
        for table in (self._sources, self._blocked, self._batch):
            for host in [host for host in table if allowlist.trusts(host, 0, "udp")]:
                del table[host]

    def clear(self, host: str) -> bool:
        """Forget `host` (an operator's clear, or it was allow-listed); False if it was unknown."""
        was_blocked = self._blocked.pop(host, None) is not None
        self._batch.pop(host, None)
        self._unannounced.discard(host)
        return self._sources.pop(host, None) is not None or was_blocked

    def rate(self, host: str, now: float) -> float:
        """The estimated requests of `host` over the last period (0 for an unknown source)."""
        source = self._sources.get(host)
        if source is None:
            return 0.0
        estimate = self._estimate(self._roll(source, now), now)
        cluster = source.cluster
        if cluster is None or now - source.cluster_at > self._fresh:
            return estimate
        return max(estimate, self._estimate(self._roll(cluster, now), now) + source.pending)

    def is_blocked(self, host: str, now: float) -> bool:
        until = self._blocked.get(host)
        return until is not None and now < until

    def blocked(self, now: float) -> dict[str, float]:
        """Blocked sources and how many seconds each stays blocked (admin view, metrics)."""
        return {host: until - now for host, until in self._blocked.items() if until > now}

    @property
    def tracked(self) -> int:
        return len(self._sources)

    def _count(self, host: str, now: float) -> float:
        source = self._sources.get(host)
        if source is None:
            if len(self._sources) >= self.settings.max_sources:
                del self._sources[next(iter(self._sources))]
            source = self._sources[host] = _Source(now)
        else:
            source = self._roll(source, now)
            self._sources[host] = self._sources.pop(host)
        source.current += 1
        estimate = self._estimate(source, now)
        if self.shared:
            return max(estimate, self._cluster_view(host, source, now))
        return estimate

    def _cluster_view(self, host: str, source: _Source, now: float) -> float:
        """Queue the request for the next batch; the cluster's requests as this worker sees them."""
        if not source.pending:
            if len(self._batch) >= SHARE_BATCH:
                return 0.0
            self._batch[host] = source
        source.pending += 1
        cluster = source.cluster
        if cluster is not None and now - source.cluster_at <= self._fresh:
            view = self._estimate(self._roll(cluster, now), now) + source.pending
        else:
            view = float(source.pending)
        # Never more than a step unsent (the error bound); a blocked source's can wait.
        if source.pending >= self._step and host not in self._blocked:
            self.on_due()
        return view

    def batch(self) -> dict[str, int]:
        """The requests counted per source since the last batch (which they are taken from)."""
        taken = {host: source.pending for host, source in self._batch.items()}
        for source in self._batch.values():
            source.pending = 0
        self._batch.clear()
        return taken

    def apply(
        self,
        windows: dict[str, SharedWindow],
        blocks: dict[str, float],
        now: float,
        started: Iterable[str] = (),
    ) -> None:
        """The cluster's answer to a batch (``now``: when it came): the batch's sources'
        windows, the blocks decided anywhere with their seconds left (a block from the
        cluster extends ours, never shortens it), and those our batch started."""
        sources, blocked = self._sources, self._blocked
        if len(self._unannounced) >= self.settings.max_blocked:
            self._unannounced.clear()
        self._unannounced.update(host for host in started if host not in blocked)
        for host, (previous, current, elapsed) in windows.items():
            source = sources.get(host)
            if source is None:
                continue
            cluster = source.cluster = source.cluster or _Source(now)
            cluster.start, cluster.previous, cluster.current = now - elapsed, previous, current
            source.cluster_at = now
        for host, left in blocks.items():
            if self._exempt(host, 0, "udp"):
                continue  # counted by a worker that did not have the allow-list yet
            until = now + left
            if blocked.get(host, 0.0) < until:
                if host not in blocked and len(blocked) >= self.settings.max_blocked:
                    del blocked[next(iter(blocked))]
                blocked[host] = until

    def forget_cluster(self, hosts: Iterable[str]) -> None:
        """Sources whose counts never reached the cluster (its Redis was away)."""
        for host in hosts:
            source = self._sources.get(host)
            if source is not None:
                source.cluster = None

    def _roll(self, source: _Source, now: float) -> _Source:
        period = self.settings.period
        elapsed = now - source.start
        if elapsed >= period:
            periods = int(elapsed // period)
            source.previous = source.current if periods == 1 else 0
            source.current = 0
            source.start += periods * period
        return source

    def _estimate(self, source: _Source, now: float) -> float:
        period = self.settings.period
        overlap = 1.0 - (now - source.start) / period
        return source.previous * overlap + source.current

    def _block(self, host: str, now: float) -> None:
        blocked = self._blocked
        blocked.pop(host, None)
        if len(blocked) >= self.settings.max_blocked:
            del blocked[next(iter(blocked))]
        blocked[host] = now + self.settings.block_time


def _no_hurry() -> None:
    """Not sharing: no batch to hurry."""
