"""Concurrent-call limits per subscriber and per source: counted leases keyed by Call-ID.

Each call holds one lease per key (subscriber, source address) from its
INVITE until its BYE, its failure, or its CANCEL.  Keying the lease by
Call-ID makes acquire and release idempotent, which SIP needs: a
retransmitted INVITE must not take a second slot, a retransmitted BYE must
not free someone else's.  A call whose end the edge never sees (the BYE
went through another edge, a worker died) would leak its slot, so leases
older than `max_call_duration` are reaped by `expire(now)`.

The counts are per process: with several workers or edges, each enforces
its own share (set the limit accordingly) until a shared counter (Redis)
replaces this one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CallLimitSettings(BaseModel):
    """`CALLMESH_CALL_LIMIT_*`: 0 means unlimited."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_subscriber: int = Field(default=0, ge=0)
    per_source: int = Field(default=0, ge=0)
    max_call_duration: float = Field(default=4 * 3600.0, gt=0)


class CallLimiter:
    """Leases for one kind of key (subscribers, or sources) under one limit."""

    __slots__ = ("_leases", "limit", "max_call_duration")

    def __init__(self, limit: int, max_call_duration: float = 4 * 3600.0) -> None:
        self.limit = limit
        self.max_call_duration = max_call_duration
        self._leases: dict[str, dict[str, float]] = {}

    def acquire(self, key: str, call_id: str, now: float) -> bool:
        """Take a slot for `call_id` (True), or refuse when `key` is at its limit (answer 486/503).

        Acquiring again for a call that holds a lease succeeds without a second slot.
        """
        calls = self._leases.get(key)
        if calls is None:
            if self.limit == 0:
                return True
            calls = self._leases[key] = {}
        elif call_id in calls:
            return True
        if self.limit and len(calls) >= self.limit:
            return False
        calls[call_id] = now
        return True

    def release(self, key: str, call_id: str) -> bool:
        """Free the call's slot; False when it held none (already released, or never counted)."""
        calls = self._leases.get(key)
        if calls is None or calls.pop(call_id, None) is None:
            return False
        if not calls:
            del self._leases[key]
        return True

    def active(self, key: str) -> int:
        calls = self._leases.get(key)
        return 0 if calls is None else len(calls)

    def expire(self, now: float) -> int:
        """Drop leases older than `max_call_duration`; return how many (call it every minute)."""
        oldest = now - self.max_call_duration
        dropped = 0
        for key in list(self._leases):
            calls = self._leases[key]
            stale = [call_id for call_id, started in calls.items() if started < oldest]
            for call_id in stale:
                del calls[call_id]
            dropped += len(stale)
            if not calls:
                del self._leases[key]
        return dropped
