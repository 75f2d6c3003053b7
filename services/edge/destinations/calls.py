"""Calls per dispatcher destination, as this edge worker counts them, for ``least_calls``.

"Active" means: an INVITE forwarded to the destination and neither failed (a
final non-2xx, a timeout, a transport error) nor, once answered, ended by a
BYE passing through this worker. Counts are per edge worker: each worker
dispatches its own share of the calls with its own counts. A BYE that reaches
another worker or edge (the kernel spreads UDP flows by address, so the
callee's BYE may) leaves the call counted here until ``max_age``; sharing the
counts across processes would put a Redis round trip on every call for a
figure that only has to be roughly fair.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from services.edge.metrics import ACTIVE_CALLS, DESTINATION_ATTEMPTS

MAX_CALL_AGE = 4 * 3600.0
"""Seconds after which a call whose end was not seen stops counting."""

_NONE: Mapping[str, int] = MappingProxyType({})


class ActiveCalls:
    __slots__ = ("_calls", "_counts", "max_age")

    def __init__(self, max_age: float = MAX_CALL_AGE) -> None:
        self.max_age = max_age
        self._calls: dict[str, tuple[str, str, float]] = {}
        """Call-ID → (set, destination URI, when its INVITE went out), oldest first."""
        self._counts: dict[str, dict[str, int]] = {}

    def of_set(self, set_id: str) -> Mapping[str, int]:
        """Active calls per destination URI of ``set_id`` (what ``Dispatcher.order`` reads)."""
        return self._counts.get(set_id, _NONE)

    def branch_sent(self, set_id: str, uri: str, method: str, call_id: str, now: float) -> None:
        """A request went to a destination; an INVITE makes the call count there."""
        DESTINATION_ATTEMPTS[set_id, uri] += 1
        if method != "INVITE":
            return
        self._expire(now)
        self.call_ended(call_id)  # a failover: the previous branch no longer counts
        self._calls[call_id] = (set_id, uri, now)
        self._add(set_id, uri, 1)

    def branch_failed(self, set_id: str, uri: str, call_id: str) -> None:
        """The INVITE on ``uri`` got a final failure: the call is not there (any more)."""
        found = self._calls.get(call_id)
        if found is not None and found[0] == set_id and found[1] == uri:
            del self._calls[call_id]
            self._add(set_id, uri, -1)

    def call_ended(self, call_id: str) -> None:
        """A BYE for ``call_id`` went through this worker."""
        found = self._calls.pop(call_id, None)
        if found is not None:
            self._add(found[0], found[1], -1)

    def _expire(self, now: float) -> None:
        """Drop calls older than ``max_age``: the dict is in start order, so from the front."""
        calls = self._calls
        oldest = now - self.max_age
        while calls:
            call_id = next(iter(calls))
            set_id, uri, started = calls[call_id]
            if started > oldest:
                return
            del calls[call_id]
            self._add(set_id, uri, -1)

    def _add(self, set_id: str, uri: str, delta: int) -> None:
        counts = self._counts.setdefault(set_id, {})
        count = counts.get(uri, 0) + delta
        if count:
            counts[uri] = count
        else:
            counts.pop(uri, None)
        ACTIVE_CALLS[set_id, uri] = count
