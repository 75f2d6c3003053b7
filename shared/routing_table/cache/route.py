"""A lookup's answer as the proxy uses it: the rule, then each gateway with its health.

Gateway order: those known ``up`` (or not yet known) in the rule's order,
then the suspected (``probing``) ones, also in order, as a last resort; ``down``
and ``disabled`` ones are never tried.
"""

from __future__ import annotations

from typing import Final

from shared.routing_table.cache.health import GatewayHealth, GatewayState
from shared.routing_table.compiled import CompiledRule, GatewayTarget, RuleEntry
from shared.routing_table.index import rule_at
from shared.routing_table.prefixes import PrefixTable

_READY: Final[frozenset[GatewayState]] = frozenset({"up", "unknown"})


class GatewayChoice:
    """One gateway to try: where to send, the number it wants, and its last known state."""

    __slots__ = ("gateway", "number", "state")

    def __init__(self, gateway: GatewayTarget, number: str, state: GatewayState) -> None:
        self.gateway = gateway
        self.number = number
        self.state = state


class Route:
    """``number`` is the routed number (after any dialplan); hops in the order to try.

    Built per call from the shared, prebuilt gateway tuple of the rule's target
    list, and nothing is computed until asked for: the hops (the per-gateway
    number and health state) on first reading, the rule's fields through the
    rule. The lookup thus never reads the rule, a cold object in a big table and
    most of a lookup's cost: the rule is ``rule_at(where, digits)`` (see
    ``RoutingIndex.locate``). Read a route before the index changes (the proxy
    and the dry run use it within the synchronous step of the lookup).
    """

    __slots__ = ("_digits", "_gateways", "_health", "_hops", "_where", "number")

    def __init__(
        self,
        where: PrefixTable[RuleEntry] | CompiledRule,
        digits: str,
        number: str,
        gateways: tuple[GatewayTarget, ...],
        health: GatewayHealth,
    ) -> None:
        self._where = where
        self._digits = digits
        self.number = number
        self._gateways = gateways
        self._health = health
        self._hops: tuple[GatewayChoice, ...] | None = None

    @property
    def hops(self) -> tuple[GatewayChoice, ...]:
        """Every gateway of the route in order, with its number and health state now."""
        hops = self._hops
        if hops is None:
            number, state = self.number, self._health.state
            hops = self._hops = tuple(
                [GatewayChoice(gw, gw.dial(number), state(gw.id)) for gw in self._gateways]
            )
        return hops

    @property
    def rule(self) -> CompiledRule:
        rule = self._where = rule_at(self._where, self._digits)  # found once: sets, id, …
        return rule

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def rule_prefix(self) -> str:
        return self.rule.prefix

    @property
    def priority(self) -> int:
        return self.rule.priority

    @property
    def sets(self) -> tuple[str, ...]:
        """Dispatcher sets to try before the gateways (the model keeps them first)."""
        return self.rule.targets.sets

    def usable(self) -> tuple[GatewayChoice, ...]:
        """The hops to try: healthy ones in order, then the suspected ones (see above)."""
        hops = self.hops
        ready = tuple([hop for hop in hops if hop.state in _READY])
        if len(ready) == len(hops):
            return ready
        return ready + tuple([hop for hop in hops if hop.state == "probing"])
