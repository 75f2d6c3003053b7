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

No clock inside: every call passes `now` (seconds, monotonic).
"""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field

from shared.acl import AddressAcl


class FloodSettings(BaseModel):
    """`CALLMESH_PIKE_*`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(default=30, ge=1)
    """Requests one source may send per period (pike's reqs_density_per_unit)."""
    period: float = Field(default=2.0, gt=0)
    """Sampling period in seconds (pike's sampling_time_unit)."""
    block_time: float = Field(default=120.0, gt=0)
    """Seconds a blocked source stays dropped after it stopped flooding."""
    max_sources: int = Field(default=100_000, ge=16)
    max_blocked: int = Field(default=10_000, ge=16)


class FloodVerdict(enum.IntEnum):
    ALLOW = 0
    DROP = 1
    """Blocked: drop silently."""
    BLOCKED = 2
    """Newly blocked by this packet: drop it, publish `SourceBlocked`, bump the metric."""


class _Source:
    __slots__ = ("current", "previous", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.current = 0
        self.previous = 0


class FloodDetector:
    """Counts requests per source IP; `check` is O(1) per packet."""

    __slots__ = ("_allow", "_blocked", "_sources", "allowlist", "settings")

    def __init__(self, settings: FloodSettings, allow: AddressAcl | None = None) -> None:
        self.settings = settings
        self._allow = allow
        self.allowlist: AddressAcl | None = None
        """The operator's allow-list (``/v1/protection/allowlist``), never counted either."""
        self._sources: dict[str, _Source] = {}
        self._blocked: dict[str, float] = {}

    def check(self, host: str, now: float, port: int = 0, transport: str = "udp") -> FloodVerdict:
        """Count one request from `host` and say what to do with it."""
        blocked_until = self._blocked.get(host)
        if blocked_until is not None:
            if now < blocked_until:
                if self._count(host, now) > self.settings.limit:
                    self._block(host, now)  # still flooding: the block goes on
                return FloodVerdict.DROP
            del self._blocked[host]
        elif host not in self._sources and self._exempt(host, port, transport):
            return FloodVerdict.ALLOW
        if self._count(host, now) > self.settings.limit:
            self._block(host, now)
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
        for table in (self._sources, self._blocked):
            for host in [host for host in table if allowlist.trusts(host, 0, "udp")]:
                del table[host]

    def clear(self, host: str) -> bool:
        """Forget `host` (an operator's clear, or it was allow-listed); False if it was unknown."""
        was_blocked = self._blocked.pop(host, None) is not None
        return self._sources.pop(host, None) is not None or was_blocked

    def rate(self, host: str, now: float) -> float:
        """The estimated requests of `host` over the last period (0 for an unknown source)."""
        source = self._sources.get(host)
        return 0.0 if source is None else self._estimate(self._roll(source, now), now)

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
        return self._estimate(source, now)

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
