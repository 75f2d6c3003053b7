"""Routing policies of one branch: the operator's hook on the decision, then header manipulation.

The hook sees the decision the routing table made (`Decision` of
`services.edge.hooks`) and may replace it; its targets become the hops.
Manipulation rule sets come from the routing table (`ManipulationIndex`):
those of the caller's source group, the matched rule and the branch's gateway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from services.edge import metrics
from services.edge.hooks import Decision, RequestView, RoutingHook, Target
from services.edge.proxy.routes import Found, Hop
from shared.dispatcher.model import Mode
from shared.routing_table.index import RoutingIndex
from shared.routing_table.manipulation import apply
from shared.routing_table.modes import carried_by_b2bua
from shared.routing_table.topology import TopologyOptions
from shared.sip.errors import SipError
from shared.sip.message import Request
from shared.sip.transport.destination import Destination, destination_of
from shared.sip.uri import parse_uri

log = logging.getLogger("callmesh.edge.hooks")


class TableView(Protocol):
    """What the policies read of the routing cache: its current index."""

    @property
    def index(self) -> RoutingIndex: ...


def decide(
    hook: RoutingHook, request: Request, source: Destination, number: str, found: Found
) -> Found:
    """The hops after the hook; a `Reject` is raised as `SipError`."""
    hops = found[0] if found is not None else []
    rule_id = hops[0].rule_id if hops else None
    decision = Decision(tuple(Target(hop.uri, hop.gateway_id) for hop in hops), number, rule_id)
    view = RequestView(request, source.host, source.port, source.transport)
    result = hook.run(view, decision)
    metrics.HOOK_CALLS[result.outcome] += 1
    if result.outcome != "changed":
        return found
    chosen = result.decision
    if chosen.reject is not None:
        raise SipError(chosen.reject.reason, chosen.reject.status)
    if chosen.notes:
        log.debug("routing hook notes for %s: %s", request.call_id, "; ".join(chosen.notes))
    by_uri = {hop.uri: hop for hop in hops}
    new_hops = []
    for target in chosen.targets:
        hop = by_uri.get(target.uri)
        if hop is None or hop.gateway_id != target.gateway_id:
            hop = _hop_of(target, chosen.rule_id)
            if hop is None:
                return found
        new_hops.append(hop)
    return new_hops, found[1] if found is not None else 0


def _hop_of(target: Target, rule_id: str | None) -> Hop | None:
    try:
        uri = parse_uri(target.uri)
        destination = destination_of(uri)
    except SipError as error:
        log.warning(
            "routing hook target %r unusable (%s); default decision used", target.uri, error.reason
        )
        return None
    return Hop(target.uri, destination, target.gateway_id, target.uri, rule_id)


def manipulate(index: RoutingIndex, request: Request, group: str, hop: Hop) -> None:
    """Apply the rule sets of this branch's source group, rule and gateway, in that order."""
    sets = index.manipulations.for_branch(group, hop.rule_id, hop.gateway_id)
    if sets and apply(sets, request):
        metrics.MANIPULATED_BRANCHES.value += 1


def hop_topology(index: RoutingIndex, hop: Hop) -> TopologyOptions | None:
    """Topology hiding toward this hop: the gateway's own setting, else its rule's."""
    setting = None
    if hop.gateway_id is not None:
        gateway = index.gateways.get(hop.gateway_id)
        if gateway is not None:
            setting = gateway.topology
    if setting is None and hop.rule_id is not None:
        setting = index.rule_topology.get(hop.rule_id)
    return None if setting is None else setting.options


def b2bua_carriage(
    table: TableView, set_mode: Callable[[str | None], Mode | None]
) -> Callable[[Hop], bool]:
    """The router's question per call: does the B2BUA carry a call to this hop?  Asked of
    the table as it is then (a reload swaps its index) and of the hop's set's mode.

    Built here, in a compiled module, where a lambda of the start-up ran as Python per call.
    """

    def carried(hop: Hop) -> bool:
        return carried_by_b2bua(table.index, hop.rule_id, hop.gateway_id, set_mode(hop.set_id))

    return carried
