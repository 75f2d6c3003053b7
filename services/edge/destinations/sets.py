"""The edge's copy of the dispatcher sets and of their destinations' health states.

Fed by :mod:`services.edge.feeds.health` (a load from Redis, then the
``health.…`` events); read per call by :class:`~services.edge.destinations.SetHops`.
A set keeps its :class:`Dispatcher` (round-robin position, smooth-WRR
counters) while it is unchanged; a new version of the set starts a fresh one.
A destination with no state yet counts as up, as a new target does in the
health service.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.dispatcher import Dispatcher, DispatcherSet
from shared.dispatcher.model import Mode


class DispatchSets:
    __slots__ = ("_dispatchers", "_states")

    def __init__(self) -> None:
        self._dispatchers: dict[str, Dispatcher] = {}
        self._states: dict[str, dict[str, str]] = {}
        """Set id → destination URI → health state."""

    def dispatcher(self, set_id: str) -> Dispatcher | None:
        return self._dispatchers.get(set_id)

    def mode(self, set_id: str | None) -> Mode | None:
        """The set's `mode` (None: no such set, or unset: its destinations are proxied)."""
        dispatcher = None if set_id is None else self._dispatchers.get(set_id)
        return None if dispatcher is None else dispatcher.set.mode

    def states(self, set_id: str) -> Mapping[str, str]:
        return self._states.get(set_id, {})

    def put(self, set_id: str, dispatcher_set: DispatcherSet) -> None:
        current = self._dispatchers.get(set_id)
        if current is None or current.set != dispatcher_set:
            self._dispatchers[set_id] = Dispatcher(set_id, dispatcher_set)

    def delete(self, set_id: str) -> None:
        self._dispatchers.pop(set_id, None)

    def balancing(self) -> bool:
        """A set balances by calls (``least_calls``): the cluster's counts are worth having
        before this worker's first call to it."""
        return any(d.set.algorithm == "least_calls" for d in self._dispatchers.values())

    def set_state(self, set_id: str, uri: str, state: str) -> None:
        self._states.setdefault(set_id, {})[uri] = state

    def forget_state(self, set_id: str, uri: str) -> None:
        self._states.get(set_id, {}).pop(uri, None)

    def replace(self, sets: Mapping[str, DispatcherSet]) -> None:
        """A full reload: exactly these sets (unchanged ones keep their rotation)."""
        for set_id in [known for known in self._dispatchers if known not in sets]:
            del self._dispatchers[set_id]
        for set_id, dispatcher_set in sets.items():
            self.put(set_id, dispatcher_set)
