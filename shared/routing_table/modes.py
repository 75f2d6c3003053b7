"""Whether the edge carries a call as a proxy or a B2BUA: one place for the edges and the
dry run (docs/b2bua.md).

Precedence, most specific first, as for the media relay policy: the gateway's own
``mode``, else its rule's, else ``proxy``. The call's first hop decides (the one the
B2BUA calls); a dispatcher set's destination has its set's ``mode`` (unset: proxied, the
rule's mode does not reach it).
"""

from __future__ import annotations

from typing import Literal

from shared.dispatcher.model import Mode
from shared.routing_table.index import RoutingIndex

Level = Literal["gateway", "rule", "set", "default"]


def mode_for(
    index: RoutingIndex,
    rule_id: str | None,
    gateway_id: str | None,
    set_mode: Mode | None = None,
) -> tuple[Mode, Level]:
    """The mode toward `gateway_id` routed by `rule_id`, or toward a destination of a set
    whose mode is `set_mode` (no gateway), and the level that set it."""
    if gateway_id is None:
        return set_mode_for(set_mode)
    gateway = index.gateways.get(gateway_id)
    if gateway is not None and gateway.mode is not None:
        return gateway.mode, "gateway"
    if rule_id in index.b2bua_rules:
        return "b2bua", "rule"
    return "proxy", "default"


def set_mode_for(set_mode: Mode | None) -> tuple[Mode, Level]:
    """A dispatcher set's destination's mode, from its set's `mode`, and the level."""
    return ("proxy", "default") if set_mode is None else (set_mode, "set")


def carried_by_b2bua(
    index: RoutingIndex,
    rule_id: str | None,
    gateway_id: str | None,
    set_mode: Mode | None = None,
) -> bool:
    """`mode_for` is b2bua; with no b2bua rule or gateway in the table and no set's mode,
    two set lookups."""
    if gateway_id is None:
        return set_mode == "b2bua"
    if not index.b2bua_rules and not index.b2bua_gateways:
        return False
    return mode_for(index, rule_id, gateway_id)[0] == "b2bua"
