"""``/fraud``: the operator's view of the fraud counts and blocks, lifting a block, and the
dry run's fraud verdict.

The rules are records of the table (``/fraud/rules``, the entity router);
the counts and blocks are what the edges' scripts keep in Redis
(:mod:`shared.fraud.store`). ``GET /fraud/state`` reads every block and the
figures of the (rule, account) pairs counted most recently; an unblock lifts a
block on every edge at once (the next call's script no longer finds it) and
announces it as ``fraud.block.removed``.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query, status

from shared.bus import Bus
from shared.contracts.fraud import FraudUnblocked
from shared.fraud.rules import METRICS, RuleMatch
from shared.fraud.store import Counts, FraudStore, block_id
from shared.routing_table.cache import RoutingCache
from shared.routing_table.index import RoutingIndex

log = logging.getLogger("callmesh.routing.fraud")

BLOCK_ID: Final = re.compile(r"[0-9a-f]{16}")
"""A block id as GET /v1/fraud/state shows it; any other is simply not found (404)."""
Count = Annotated[int, Query(ge=1, le=10_000, description="at most this many recent pairs")]


def fraud_router(cache: RoutingCache, fraud: FraudStore, bus: Bus) -> APIRouter:
    router = APIRouter(prefix="/fraud", tags=["fraud"])

    @router.get("/state", summary="Blocks in force and each watched account's figures now")
    async def state(count: Count = 1000) -> dict[str, Any]:
        rules = dict(cache.index.fraud.items())
        pairs = [pair for pair in await fraud.watched(count) if pair[0] in rules]
        return {
            "blocks": await fraud.blocks(),
            "counts": [
                {**figures(each), "levels": levels_of(rules[each.rule_id].levels())}
                for each in await fraud.counts(pairs)
            ],
        }

    @router.post("/blocks/{block_id}:unblock", summary="Lift a fraud block on every edge")
    async def unblock(block_id: str) -> dict[str, Any]:
        found = await fraud.unblock(block_id) if BLOCK_ID.fullmatch(block_id) else None
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no fraud block {block_id!r}")
        event = FraudUnblocked(
            block=block_id, account=found["account"], prefix=found.get("prefix"), rule=found["rule"]
        )
        try:
            await bus.publish(event)
        except Exception as error:  # lifted all the same: the event is a notice
            log.warning("fraud block %s lifted but not announced: %s", block_id, error)
        return {"unblocked": found}

    return router


def figures(counts: Counts) -> dict[str, Any]:
    return {
        "rule": counts.rule_id,
        "account": counts.account,
        "calls_per_minute": counts.calls_per_minute,
        "concurrent": counts.concurrent,
        "sequential": counts.sequential,
        "last_prefix": counts.last_prefix,
        "minutes_per_day": counts.minutes_per_day,
    }


def levels_of(levels: tuple[int, ...]) -> dict[str, dict[str, int | None]]:
    """A rule's (warning, critical) per metric as the API shows them (None: not set)."""
    return {
        metric: {"warning": levels[2 * i] or None, "critical": levels[2 * i + 1] or None}
        for i, metric in enumerate(METRICS)
        if levels[2 * i] or levels[2 * i + 1]
    }


async def fraud_dry_run(
    index: RoutingIndex, fraud: FraudStore, account: str, number: str
) -> dict[str, Any] | None:
    """What the fraud screen would do with a call of ``account`` to ``number`` now: refused by
    a block, or admitted, and per rule the figures with the level one more call reaches.
    None when no rule watches the account (the edge asks nothing)."""
    query = index.fraud.query("dry-run", account, number)
    if query is None:
        return None
    blocked = await fraud.blocked(account)
    counted = [match for match in query.matches if match.prefix is not None]
    members = ["*", *(match.prefix for match in counted if match.prefix is not None)]
    member = next((each for each in members if each in blocked), None)
    counts = await fraud.counts([(match.rule_id, account) for match in counted])
    return {
        "account": account,
        "verdict": "admitted" if member is None else "refused",
        "block": None
        if member is None
        else {
            "id": block_id(account, member),
            "blocked": "account" if member == "*" else "prefix",
            "prefix": None if member == "*" else member,
        },
        "rules": [
            {**figures(each), "prefix": match.prefix, "next_call": next_call(match, each)}
            for match, each in zip(counted, counts, strict=True)
        ],
    }


def next_call(match: RuleMatch, counts: Counts) -> dict[str, str]:
    """The level each metric would be at after one more call (``ok``, ``warning``,
    ``critical``); minutes grow only at a call's end."""
    sequential = counts.sequential + 1 if counts.last_prefix == match.prefix else 1
    after = (counts.calls_per_minute + 1, counts.concurrent + 1, sequential, counts.minutes_per_day)
    found = {}
    for i, metric in enumerate(METRICS):
        warning, critical = match.levels[2 * i], match.levels[2 * i + 1]
        if not warning and not critical:
            continue
        level = "ok"
        if critical and after[i] >= critical:
            level = "critical"
        elif warning and after[i] >= warning:
            level = "warning"
        found[metric] = level
    return found
