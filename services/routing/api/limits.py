"""``GET /limits``: the operator's view of the shared call limits, usage as of now.

The limits themselves are the routing table's (a peer's or a rule's ``limits``,
a gateway's or a carrier's channel cap: :mod:`shared.limits.table`) or the edges'
settings (per subscriber, per stranger's source IP);
the usage is what the edges' scripts keep in Redis (:mod:`shared.limits.store`),
read for every entity with a limit in the table and every entity an edge
limited lately, in one script call.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from shared.limits import table
from shared.limits.store import SharedLimits, Usage
from shared.routing_table.cache import RoutingCache

Count = Annotated[int, Query(ge=1, le=10_000, description="at most this many recent entities")]


def limits_router(cache: RoutingCache, limits: SharedLimits) -> APIRouter:
    router = APIRouter(tags=["routing"])

    @router.get("/limits", summary="Usage now of every limited entity (peer, rule, gateway…)")
    async def usage(count: Count = 1000) -> dict[str, Any]:
        index = cache.index
        configured = table.configured(index)
        entities = sorted(set(configured) | set(await limits.known(count)))
        found = await limits.usage(entities)
        return {"items": [usage_item(each, configured.get(each.entity)) for each in found]}

    return router


def usage_item(usage: Usage, configured: tuple[int | None, int | None] | None) -> dict[str, Any]:
    max_concurrent, max_cps = configured or (None, None)
    return {
        "entity": usage.entity,
        "concurrent": usage.concurrent,
        "max_concurrent": max_concurrent,
        "max_cps": max_cps,
        "cps_tokens": None if usage.tokens is None else round(usage.tokens, 3),
    }
