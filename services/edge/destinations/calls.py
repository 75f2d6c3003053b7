"""Calls per dispatcher destination, as this edge worker counts them, for ``least_calls``.

"Active" means: an INVITE forwarded to the destination and neither failed (a
final non-2xx, a timeout, a transport error) nor, once answered, ended by a
BYE passing through this worker. A BYE that reaches another worker or edge
(the kernel spreads UDP flows by address, so the callee's BYE may) leaves the
call counted here until ``max_age``.

Shared by the cluster (`share`): every worker sends its own counts to Redis every
interval (:mod:`services.edge.runtime.call_counts`, one round trip, never one per
call) and gets the cluster's totals back; a choice reads this worker's counts as
they are now plus the other workers' as of the last exchange (`of_set`), so a
destination busy with another edge's calls is seen busy here. The other workers'
part is at most one interval and a round trip old (docs/limits.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from services.edge.metrics import ACTIVE_CALLS, DESTINATION_ATTEMPTS

MAX_CALL_AGE: Final = 4 * 3600.0
"""Seconds after which a call whose end was not seen stops counting."""

_NONE: Final[Mapping[str, int]] = MappingProxyType({})


class ActiveCalls:
    __slots__ = ("_calls", "_counts", "_others", "_view", "dispatched", "max_age")

    def __init__(self, max_age: float = MAX_CALL_AGE) -> None:
        self.max_age = max_age
        self._calls: dict[str, tuple[str, str, float]] = {}
        """Call-ID → (set, destination URI, when its INVITE went out), oldest first."""
        self._counts: dict[str, dict[str, int]] = {}
        self._others: dict[str, dict[str, int]] = {}
        """The other workers' calls per set and destination, as of the last exchange."""
        self._view: dict[str, dict[str, int]] = self._counts
        """Ours plus the others' (ours alone until the first exchange)."""
        self.dispatched = False
        """An INVITE went to a destination of a set (the counts are worth exchanging)."""

    def of_set(self, set_id: str) -> Mapping[str, int]:
        """Active calls per destination URI of ``set_id`` (what ``Dispatcher.order`` reads):
        this worker's, plus the other workers' when the counts are shared."""
        return self._view.get(set_id, _NONE)

    def own(self, now: float) -> dict[str, dict[str, int]]:
        """This worker's counts per set and destination (a copy, for an exchange)."""
        self._expire(now)
        return {set_id: dict(counts) for set_id, counts in self._counts.items()}

    def cluster(self, totals: dict[str, dict[str, int]], sent: dict[str, dict[str, int]]) -> None:
        """The cluster's totals that came back for ``sent`` (our counts in them): the others'
        part is kept, and the view is ours as they are now plus it."""
        others: dict[str, dict[str, int]] = {}
        for set_id, counts in totals.items():
            ours = sent.get(set_id, {})
            theirs = {uri: n - ours.get(uri, 0) for uri, n in counts.items()}
            others[set_id] = {uri: n for uri, n in theirs.items() if n > 0}
        self._others = others
        view = {set_id: dict(counts) for set_id, counts in self._counts.items()}
        for set_id, counts in others.items():
            merged = view.setdefault(set_id, {})
            for uri, n in counts.items():
                merged[uri] = merged.get(uri, 0) + n
        self._view = view

    def alone(self) -> None:
        """No exchange for too long (Redis away): balance on this worker's counts only."""
        self._others = {}
        self._view = self._counts

    def branch_sent(self, set_id: str, uri: str, method: str, call_id: str, now: float) -> None:
        """A request went to a destination; an INVITE makes the call count there."""
        DESTINATION_ATTEMPTS[set_id, uri] += 1
        if method != "INVITE":
            return
        self.dispatched = True
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
        view = self._view
        if view is not self._counts:
            merged = view.setdefault(set_id, {})
            merged[uri] = count + self._others.get(set_id, {}).get(uri, 0)
