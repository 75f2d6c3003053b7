"""A routing table held in memory behind the routing cache's lookup interface.

The sans-IO proxy tests drive `Proxy` without Redis or a bus; this gives them
the same `lookup`/`translate` the edge's `RoutingCache` offers, over a real
`RoutingIndex`.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.edge.routing_cache import GatewayHealth, Route
from services.routing.table.index import RoutingIndex
from services.routing.table.model import Gateway, Kind, Record, Rule


class MemoryTable:
    def __init__(self, gateways: Mapping[str, Gateway], rules: Mapping[str, Rule]) -> None:
        self.index = RoutingIndex()
        self.health = GatewayHealth()
        for gateway_id, gateway in gateways.items():
            self.put("gateway", gateway_id, gateway)
        for rule_id, rule in rules.items():
            self.put("rule", rule_id, rule)

    def put(self, kind: Kind, record_id: str, record: Record) -> None:
        self.index.put(kind, record_id, record)

    def lookup(self, number: str, group: str = "0") -> Route | None:
        rule = self.index.find(number, group)
        if rule is None:
            return None
        return Route(rule, number, self.index.gateways_of(rule), self.health)

    def translate(self, dialplan_id: str, number: str) -> str:
        raise KeyError(dialplan_id)
