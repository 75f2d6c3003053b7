"""Choosing destinations from a dispatcher set: the first to try, then the failover order.

Pure and synchronous (no I/O, no clock): the edge calls :meth:`Dispatcher.order`
per call with what it knows (each destination's health state, its own active
call counts) and tries the returned destinations in turn.

Health states: ``up`` and unknown (no state yet) are usable; ``probing``
(suspected, not confirmed down) is kept as a last resort after every usable
destination; ``down`` and ``disabled`` are never returned. Destinations of
weight 0 come after every weighted one (OpenSIPS: a standby box).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from shared.dispatcher.hashing import rendezvous_score
from shared.dispatcher.model import Algorithm, DispatcherSet, SetMember

USABLE_STATES = frozenset({"up"})
LAST_RESORT_STATES = frozenset({"probing"})

Candidate = tuple[int, SetMember]
"""A destination with its position in the set, the tie-breaker everywhere."""


@dataclass(frozen=True, slots=True)
class Call:
    """What the hashing algorithms read from the request being dispatched."""

    call_id: str = ""
    from_user: str = ""


class Dispatcher:
    """One set's selection state: the round-robin position and the smooth-WRR counters.

    Keep one per set for as long as the set is unchanged; a new version of the
    set gets a new dispatcher (the rotation restarting is harmless).
    """

    __slots__ = ("_current", "_rng", "_turn", "set", "set_id")

    def __init__(
        self, set_id: str, dispatcher_set: DispatcherSet, rng: random.Random | None = None
    ) -> None:
        self.set_id = set_id
        self.set = dispatcher_set
        self._rng = rng or random.Random()
        self._turn = 0
        self._current: dict[str, int] = {}

    def order(
        self,
        call: Call,
        *,
        algorithm: Algorithm | None = None,
        states: Mapping[str, str] | None = None,
        active_calls: Mapping[str, int] | None = None,
    ) -> list[SetMember]:
        """Destinations to try, best first; empty when none may be used.

        ``states`` and ``active_calls`` are keyed by destination URI; a
        destination missing from ``states`` counts as up.
        """
        states = states or {}
        usable: list[Candidate] = []
        last_resort: list[Candidate] = []
        for candidate in enumerate(self.set.destinations):
            state = states.get(candidate[1].uri, "up")
            if state in USABLE_STATES:
                usable.append(candidate)
            elif state in LAST_RESORT_STATES:
                last_resort.append(candidate)
        weighted = [c for c in usable if c[1].weight > 0]
        standby = [c for c in usable if c[1].weight == 0]
        ranked = self._rank(algorithm or self.set.algorithm, weighted, call, active_calls or {})
        return [destination for _, destination in (*ranked, *standby, *last_resort)]

    def _rank(
        self,
        algorithm: Algorithm,
        candidates: list[Candidate],
        call: Call,
        active_calls: Mapping[str, int],
    ) -> list[Candidate]:
        if not candidates:
            return []
        if algorithm == "hash_call_id":
            return _by_rendezvous(candidates, call.call_id)
        if algorithm == "hash_from_user":
            return _by_rendezvous(candidates, call.from_user)
        if algorithm == "round_robin":
            start = self._turn % len(candidates)
            self._turn += 1
            return candidates[start:] + candidates[:start]
        if algorithm == "weighted_round_robin":
            return self._smooth_weighted(candidates)
        if algorithm == "random":
            return self._rng.sample(candidates, len(candidates))
        if algorithm == "priority":
            return sorted(candidates, key=lambda c: (-c[1].priority, c[0]))
        return sorted(candidates, key=lambda c: (active_calls.get(c[1].uri, 0) / c[1].weight, c[0]))

    def _smooth_weighted(self, candidates: list[Candidate]) -> list[Candidate]:
        """Smooth weighted round-robin: exact shares, and no burst to the heaviest.

        Each turn every candidate gains its weight, the richest is chosen and
        pays the total back; over ``sum(weights)`` turns each is chosen exactly
        ``weight`` times, interleaved. The failover order after the choice is
        by weight, heaviest first.
        """
        current = self._current
        total = 0
        for _, destination in candidates:
            current[destination.uri] = current.get(destination.uri, 0) + destination.weight
            total += destination.weight
        chosen = max(candidates, key=lambda c: (current[c[1].uri], -c[0]))
        current[chosen[1].uri] -= total
        rest = sorted(
            (c for c in candidates if c is not chosen), key=lambda c: (-c[1].weight, c[0])
        )
        return [chosen, *rest]


def _by_rendezvous(candidates: list[Candidate], key: str) -> list[Candidate]:
    return sorted(
        candidates,
        key=lambda c: (-rendezvous_score(key, c[1].uri, c[1].weight), c[0]),
    )
