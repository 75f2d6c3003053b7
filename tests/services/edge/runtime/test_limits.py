"""The edge worker's side of the shared limits on the real Redis: a burst of admissions
(the backlog a stalled worker wakes up to) is checked, not let through unchecked."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.edge.policy.limits import CallLeases, CallLimitSettings
from services.edge.runtime.limits import IN_FLIGHT, LimitsRunner
from services.edge.runtime.publisher import EventPublisher
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.limits.model import Demand, LimitQuery
from shared.limits.store import SharedLimits
from shared.routing_table.index import RoutingIndex
from shared.store import Store
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration


class _Table:
    def __init__(self) -> None:
        self.index = RoutingIndex()


async def test_a_burst_larger_than_the_pool_is_checked_not_admitted_unchecked(
    namespace: str,
) -> None:
    """200 admissions at once over a pool of IN_FLIGHT + 4 connections (the store's pool
    refuses past its size): every one gets a verdict, exactly the 50 slots are given."""
    pool = aioredis.Redis.from_url(REDIS_URL, max_connections=IN_FLIGHT + 4)
    store = Store(pool, namespace)
    bus = MemoryBus(MemoryBroker(), namespace, "edge", "e1")
    leases = CallLeases(CallLimitSettings(), _Table())
    runner = LimitsRunner(
        SharedLimits(store), leases, EventPublisher(bus), "e1", asyncio.get_running_loop()
    )
    peer = (Demand("peer:p", max_concurrent=50),)
    try:
        verdicts = await asyncio.gather(
            *(runner.acquire(LimitQuery(f"c{n}", peer)) for n in range(200))
        )
        assert None not in verdicts  # none admitted unchecked
        assert sum(verdict.admitted for verdict in verdicts if verdict) == 50
    finally:
        await runner.stop()
        await store.delete_namespace()
        await store.close()
