"""A lookup's answer as the proxy uses it: the rule, then each gateway with its health.

Hop order policy: gateways known ``up`` (or not yet known) in the rule's order,
then the suspected (``probing``) ones, also in order, as a last resort; ``down``
and ``disabled`` ones are never tried.
"""

from __future__ import annotations

from services.edge.routing_cache.health import GatewayHealth, GatewayState
from services.routing.table.index import CompiledRule, GatewayTarget

_READY: frozenset[GatewayState] = frozenset({"up", "unknown"})
_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}


def dispatcher_sets(targets: tuple[str, ...]) -> tuple[str, ...]:
    """The dispatcher set ids (``@farm`` → ``farm``) among a rule's targets, memoised.

    Rules share interned target tuples, so the memo holds one entry per distinct
    target list, and a lookup pays one dict probe instead of a scan.
    """
    found = _SETS.get(targets)
    if found is None:
        found = tuple(target[1:] for target in targets if target[:1] == "@")
        if len(_SETS) > 100_000:
            _SETS.clear()
        _SETS[targets] = found
    return found


class Hop:
    """One gateway to try: where to send, the number it wants, and its last known state."""

    __slots__ = ("gateway", "number", "state")

    def __init__(self, gateway: GatewayTarget, number: str, state: GatewayState) -> None:
        self.gateway = gateway
        self.number = number
        self.state = state


class Route:
    """``number`` is the routed number (after any dialplan); hops in the order to try.

    Built per call from the rule and its prebuilt gateway tuple: only the hops
    (which carry the per-call number and health state) are allocated.
    """

    __slots__ = ("hops", "number", "priority", "rule_id", "rule_prefix", "sets")

    def __init__(
        self,
        rule: CompiledRule,
        number: str,
        gateways: tuple[GatewayTarget, ...],
        health: GatewayHealth,
    ) -> None:
        self.rule_id = rule.id
        self.rule_prefix = rule.prefix
        self.priority = rule.priority
        self.number = number
        state = health.state
        self.hops = tuple([Hop(gw, gw.dial(number), state(gw.id)) for gw in gateways])
        self.sets = dispatcher_sets(rule.targets)
        """Dispatcher sets to try before the gateways (the model keeps them first)."""

    def usable(self) -> tuple[Hop, ...]:
        """The hops to try: healthy ones in order, then the suspected ones (see above)."""
        hops = self.hops
        ready = tuple([hop for hop in hops if hop.state in _READY])
        if len(ready) == len(hops):
            return ready
        return ready + tuple([hop for hop in hops if hop.state == "probing"])
