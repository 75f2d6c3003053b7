"""A lookup's answer as the proxy uses it: the rule, then each gateway with its health."""

from __future__ import annotations

from services.edge.routing_cache.health import GatewayHealth, GatewayState
from services.routing.table.index import GatewayTarget, Match


class Hop:
    """One gateway to try: where to send, the number it wants, and its last known state."""

    __slots__ = ("gateway", "number", "state")

    def __init__(self, gateway: GatewayTarget, number: str, state: GatewayState) -> None:
        self.gateway = gateway
        self.number = number
        self.state = state


class Route:
    """``number`` is the routed number (after any dialplan); hops in the order to try."""

    __slots__ = ("hops", "number", "priority", "rule_id", "rule_prefix")

    def __init__(self, match: Match, health: GatewayHealth) -> None:
        rule = match.rule
        self.rule_id = rule.id
        self.rule_prefix = rule.prefix
        self.priority = rule.priority
        self.number = match.number
        self.hops = tuple(
            Hop(gateway, gateway.dial(match.number), health.state(gateway.id))
            for gateway in match.gateways
        )

    def usable(self) -> tuple[Hop, ...]:
        """The hops not known to be down, order kept."""
        return tuple(hop for hop in self.hops if hop.state != "down")
