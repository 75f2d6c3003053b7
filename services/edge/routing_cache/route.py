"""A lookup's answer as the proxy uses it: the rule, then each gateway with its health."""

from __future__ import annotations

from services.edge.routing_cache.health import GatewayHealth, GatewayState
from services.routing.table.index import CompiledRule, GatewayTarget


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

    __slots__ = ("hops", "number", "priority", "rule_id", "rule_prefix")

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

    def usable(self) -> tuple[Hop, ...]:
        """The hops not known to be down, order kept."""
        return tuple(hop for hop in self.hops if hop.state != "down")
