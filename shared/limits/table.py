"""Which of the routing table's limits a call is held to: one answer for the edge and the
dry run (``GET /v1/route``), so what the operator is shown is what the edges apply.

From the table: its peer's limits (``peer:<id>``), the limits of the rule that routes
its number (``rule:<id>``: a destination prefix's), and of the gateways it would try
first, up to the first with no cap of any kind, each gateway's channel cap and calls per
second (``gateway:<id>``) and its capped carriers' (``carrier:<id>``). The edges' settings
add the subscriber's and, for a stranger (a source no peer covers), its IP's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from shared.limits.model import Channel, Demand
from shared.routing_table.index import RoutingIndex
from shared.routing_table.model import Limits, default_burst


def demand(entity: str, limits: Limits | None) -> Demand | None:
    """The demand of ``entity`` held to ``limits``, None when they limit nothing."""
    if limits is None or (limits.max_concurrent is None and limits.max_cps is None):
        return None
    take = limits.cps_allowance or 1 if limits.max_cps is not None else 1
    return Demand(entity, limits.max_concurrent, limits.max_cps, limits.burst, take)


def table_demands(index: RoutingIndex, peer: str | None, rule: str | None) -> list[Demand]:
    """The peer's and the rule's limits, those that are set."""
    found: list[Demand] = []
    record = index.peers.get(peer) if peer is not None else None
    for entity, limits in (
        (f"peer:{peer}", record.limits if record is not None else None),
        (f"rule:{rule}", index.rule_limits.get(rule) if rule is not None else None),
    ):
        held = demand(entity, limits)
        if held is not None:
            found.append(held)
    return found


def held_to(entity: str, concurrent: int, cps: int) -> Demand:
    """``entity`` held to the limits of the edges' settings (0: that limit is off): a
    subscriber's (``CALLMESH_CALL_LIMIT_PER_SUBSCRIBER``, ``_PER_SUBSCRIBER_CPS``)."""
    rate = cps or None
    return Demand(entity, concurrent or None, rate, rate and default_burst(rate))


def stranger(host: str, concurrent: int, cps: int) -> Demand:
    """The limits of a stranger's source IP (``CALLMESH_CALL_LIMIT_PER_SOURCE`` and
    ``_PER_SOURCE_CPS``; 0: that limit is off)."""
    return held_to(f"source:{host}", concurrent, cps)


def channels(index: RoutingIndex, gateway_ids: Iterable[str | None]) -> tuple[Channel, ...]:
    """The capped gateways among the first ones tried, up to the first without any cap
    (a call that gets there needs no channel, so none before it is worth taking)."""
    found: list[Channel] = []
    for gateway_id in gateway_ids:
        gateway = index.gateways.get(gateway_id) if gateway_id else None
        if gateway is None:
            break
        caps = [Demand(f"carrier:{c}", cap) for c, cap in index.carrier_caps(gateway.id)]
        limits = gateway.limits
        if limits is not None and (limits.max_concurrent is not None or limits.max_cps):
            own = Demand(f"gateway:{gateway.id}", limits.max_concurrent, limits.max_cps)
            caps.insert(0, replace(own, burst=limits.burst))
        if not caps:
            break
        found.append(Channel(f"gateway:{gateway.id}", tuple(caps)))
    return tuple(found)


def configured(index: RoutingIndex) -> dict[str, tuple[int | None, int | None]]:
    """entity → (max_concurrent, max_cps) of every peer, rule, gateway and carrier with
    limits in the table (for the operator's view)."""
    found: dict[str, tuple[int | None, int | None]] = {}
    for peer_id, peer in index.peers.items():
        if peer.limits is not None:
            found[f"peer:{peer_id}"] = (peer.limits.max_concurrent, peer.limits.max_cps)
    for rule_id, limits in index.rule_limits.items():
        found[f"rule:{rule_id}"] = (limits.max_concurrent, limits.max_cps)
    for gateway in index.gateways.values():
        own = gateway.limits
        if own is not None and (own.max_concurrent is not None or own.max_cps):
            found[f"gateway:{gateway.id}"] = (own.max_concurrent, own.max_cps)
    for carrier in index.carriers.values():
        if carrier.channels is not None:
            found[f"carrier:{carrier.id}"] = (carrier.channels, None)
    return found
