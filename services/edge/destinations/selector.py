"""Which destinations of a route's dispatcher sets to try for one call, best first.

Each set orders its destinations by its algorithm with what this worker knows:
the health states (down and disabled never returned, probing last) and its
own active-call counts. A set the edge does not know (not created yet, or
deleted) contributes nothing, as a missing carrier does in a rule.
"""

from __future__ import annotations

from collections.abc import Iterator

from services.edge.destinations.calls import ActiveCalls
from services.edge.destinations.sets import DispatchSets
from shared.dispatcher import Call
from shared.sip.errors import SipError
from shared.sip.message import Request
from shared.sip.uri import SipUri, TelUri


class SetSelector:
    __slots__ = ("_calls", "_sets")

    def __init__(self, sets: DispatchSets, calls: ActiveCalls) -> None:
        self._sets = sets
        self._calls = calls

    def destinations(
        self, set_ids: tuple[str, ...], request: Request | None
    ) -> Iterator[tuple[str, str]]:
        """(set id, destination URI) pairs in the order to try them."""
        for set_id in set_ids:
            dispatcher = self._sets.dispatcher(set_id)
            if dispatcher is None:
                continue
            call = _call_of(request, dispatcher.set.algorithm == "hash_from_user")
            ordered = dispatcher.order(
                call, states=self._sets.states(set_id), active_calls=self._calls.of_set(set_id)
            )
            for destination in ordered:
                yield set_id, destination.uri

    def target_state(self, set_id: str, key: str) -> str:
        """The health state of `key` in the set: a destination's URI, or `{uri}@{label}` for one
        DNS target of a destination given by name (probed one by one)."""
        return self._sets.states(set_id).get(key, "unknown")


def _call_of(request: Request | None, from_user: bool) -> Call:
    """What the hashing reads; the From user is parsed only for the set that hashes it."""
    if request is None:
        return Call()
    if not from_user:
        return Call(request.call_id)
    try:
        uri = request.from_.uri
    except SipError:
        return Call(request.call_id)
    if isinstance(uri, TelUri):
        return Call(request.call_id, uri.number)
    return Call(request.call_id, (uri.user if isinstance(uri, SipUri) else None) or "")
