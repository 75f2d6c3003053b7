"""A lookup's answer as the proxy uses it: the rule, then each gateway with its health.

Hop order policy: gateways known ``up`` (or not yet known) in the rule's order,
then the suspected (``probing``) ones, also in order, as a last resort; ``down``
and ``disabled`` ones are never tried.
"""

from __future__ import annotations

from services.edge.routing_cache.health import GatewayHealth, GatewayState
from services.routing.table.index import CompiledRule, GatewayTarget

_READY: frozenset[GatewayState] = frozenset({"up", "unknown"})


class Hop:
    """One gateway to try: where to send, the number it wants, and its last known state."""

    __slots__ = ("gateway", "number", "state")

    def __init__(self, gateway: GatewayTarget, number: str, state: GatewayState) -> None:
        self.gateway = gateway
        self.number = number
        self.state = state


class Route:
    """``number`` is the routed number (after any dialplan); hops in the order to try.

    Built per call from the rule and its shared, prebuilt gateway tuple: only the
    hops (which carry the per-call number and health state) are allocated. The
    rule's own fields are read through it when asked for, so a lookup touches
    the cold rule object once and never its id or prefix strings.
    """

    __slots__ = ("hops", "number", "rule", "sets")

    def __init__(
        self,
        rule: CompiledRule,
        number: str,
        gateways: tuple[GatewayTarget, ...],
        health: GatewayHealth,
    ) -> None:
        self.rule = rule
        self.number = number
        state = health.state
        self.hops = tuple([Hop(gw, gw.dial(number), state(gw.id)) for gw in gateways])
        self.sets = rule.targets.sets
        """Dispatcher sets to try before the gateways (the model keeps them first)."""

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def rule_prefix(self) -> str:
        return self.rule.prefix

    @property
    def priority(self) -> int:
        return self.rule.priority

    def usable(self) -> tuple[Hop, ...]:
        """The hops to try: healthy ones in order, then the suspected ones (see above)."""
        hops = self.hops
        ready = tuple([hop for hop in hops if hop.state in _READY])
        if len(ready) == len(hops):
            return ready
        return ready + tuple([hop for hop in hops if hop.state == "probing"])
