"""``GET /route``: the dry run — what an edge would do with this number right now.

It answers from the same in-memory cache the edges use, fed by the same events,
so it shows exactly the edges' view (including each gateway's health state),
what the header manipulation rule sets would do to each branch (on a typical
INVITE), and whether topology hiding applies toward each gateway.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from shared.routing_table.cache import RoutingCache
from shared.routing_table.index import RoutingIndex
from shared.routing_table.manipulation import dry_run as manipulation_dry_run
from shared.routing_table.model import ID_PATTERN

Number = Annotated[str, Query(pattern=r"^[+0-9*#]{1,64}$", description="digits, may start with +")]
Group = Annotated[str, Query(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
DialplanId = Annotated[
    str | None, Query(pattern=rf"^{ID_PATTERN}$", description="translate the number first")
]


def route_router(cache: RoutingCache) -> APIRouter:
    router = APIRouter(tags=["routing"])

    @router.get("/route", summary="Dry run: the rule and gateways a number routes to")
    async def dry_run(number: Number, group: Group = "0", dialplan: DialplanId = None) -> Any:
        routed = number
        if dialplan is not None:
            try:
                routed = cache.translate(dialplan, number)
            except KeyError:
                raise HTTPException(
                    status.HTTP_404_NOT_FOUND, f"no dialplan {dialplan!r}"
                ) from None
        route = cache.lookup(routed, group)
        if route is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"no route for {routed!r} in group {group!r}"
            )
        return {
            "number": number,
            "routed_number": routed,
            "group": group,
            "version": cache.version,
            "rule": {"id": route.rule_id, "prefix": route.rule_prefix, "priority": route.priority},
            "dispatcher_sets": list(route.sets),
            "gateways": [
                {
                    "id": hop.gateway.id,
                    "address": hop.gateway.address,
                    "number": hop.number,
                    "state": hop.state,
                    "topology_hiding": _topology(cache.index, route.rule_id, hop.gateway.id),
                    "manipulations": _manipulations(
                        cache.index, group, route.rule_id, hop.gateway.id, hop.number
                    ),
                }
                for hop in route.hops
            ],
        }

    return router


def _topology(index: RoutingIndex, rule_id: str, gateway_id: str) -> dict[str, Any] | None:
    """The options the edge applies toward this gateway (the gateway's own, else the rule's)."""
    gateway = index.gateways.get(gateway_id)
    setting = gateway.topology if gateway is not None else None
    setting = setting or index.rule_topology.get(rule_id)
    options = setting.options if setting is not None else None
    return None if options is None else options.model_dump(mode="json")


def _manipulations(
    index: RoutingIndex, group: str, rule_id: str, gateway_id: str, number: str
) -> dict[str, Any]:
    sets = index.manipulations.for_branch(group, rule_id, gateway_id)
    result = manipulation_dry_run(sets, number)
    return {
        "rule_sets": [rule_set.id for rule_set in sets],
        "number": result.number,
        "changes": [
            {
                "rule_set": change.rule_set,
                "rule": change.rule,
                "action": change.action,
                "target": change.target,
                "before": change.before,
                "after": change.after,
            }
            for change in result.changes
        ],
    }
