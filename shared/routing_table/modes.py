"""Whether the edge carries a call as a proxy or a B2BUA: one place for the edges and the
dry run (docs/b2bua.md).

Precedence, most specific first, as for the media relay policy: the gateway's own
``mode``, else its rule's, else ``proxy``. The call's first hop decides (the one the
B2BUA calls); a dispatcher set's destination has neither, and is proxied.
"""

from __future__ import annotations

from typing import Literal

from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import Mode

Level = Literal["gateway", "rule", "default"]


def mode_for(
    index: RoutingIndex, rule_id: str | None, gateway_id: str | None
) -> tuple[Mode, Level]:
    """The mode toward `gateway_id` routed by `rule_id`, and the level that set it."""
    if gateway_id is None:
        return "proxy", "default"
    gateway = index.gateways.get(gateway_id)
    if gateway is not None and gateway.mode is not None:
        return gateway.mode, "gateway"
    if rule_id in index.b2bua_rules:
        return "b2bua", "rule"
    return "proxy", "default"


def carried_by_b2bua(index: RoutingIndex, rule_id: str | None, gateway_id: str | None) -> bool:
    """`mode_for` is b2bua; with no b2bua rule or gateway in the table, two set lookups."""
    if not index.b2bua_rules and not index.b2bua_gateways:
        return False
    return mode_for(index, rule_id, gateway_id)[0] == "b2bua"
