"""A routing table held in memory behind the routing cache's lookup interface.

The sans-IO proxy tests drive `Proxy` without Redis or a bus; this gives them
the edge's own `lookup`/`translate` (`IndexRoutes`, which `RoutingCache`
extends) over a real `RoutingIndex`.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.routing_table.cache import IndexRoutes
from shared.routing_table.model import Gateway, Kind, Record, Rule


class MemoryTable(IndexRoutes):
    def __init__(self, gateways: Mapping[str, Gateway], rules: Mapping[str, Rule]) -> None:
        super().__init__()
        for gateway_id, gateway in gateways.items():
            self.put("gateway", gateway_id, gateway)
        for rule_id, rule in rules.items():
            self.put("rule", rule_id, rule)

    def put(self, kind: Kind, record_id: str, record: Record) -> None:
        self.index.put(kind, record_id, record)
