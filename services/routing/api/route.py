"""``GET /route``: the dry run — what an edge would do with this number right now.

It answers from the same in-memory cache the edges use, fed by the same events,
so it shows exactly the edges' view (including each gateway's health state).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status

from services.edge.routing_cache import RoutingCache
from services.routing.table.model import ID_PATTERN

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
                }
                for hop in route.hops
            ],
        }

    return router
