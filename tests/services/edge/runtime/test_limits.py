"""The edge worker's side of the shared limits on the real Redis: a burst of admissions
(the backlog a stalled worker wakes up to) is checked, not let through unchecked; refusals
are told as ``edge.limit.reached``, at most one per entity and period."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.edge.policy.call_limit_settings import CallLimitSettings
from services.edge.policy.limits import CallLeases
from services.edge.runtime import limits as runtime_limits
from services.edge.runtime.limits import IN_FLIGHT, LimitsRunner
from services.edge.runtime.publisher import EventPublisher
from shared.bus import Envelope
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.limits.model import Demand, LimitQuery
from shared.limits.store import SharedLimits
from shared.routing_table.index import RoutingIndex
from shared.store import Store
from tests.conftest import REDIS_URL
from tests.shared.bus.support import until

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


async def test_refusals_are_one_limit_reached_event_per_entity_and_period(
    namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four refusals of peer p within a period are one event (``refused: 1``, the first);
    the next refusal after the period is the second, counting the 4 since; another
    entity's refusal in the same period has its own event."""
    monkeypatch.setattr(runtime_limits, "EVENT_PERIOD", 0.5)
    broker = MemoryBroker()
    bus = MemoryBus(broker, namespace, "edge", "e1")
    listener = MemoryBus(broker, namespace, "test", "listener")
    await bus.start()
    await listener.start()
    heard: list[Envelope] = []

    async def collect(envelope: Envelope) -> None:
        heard.append(envelope)

    await listener.subscribe(["edge.limit.#"], collect)
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    leases = CallLeases(CallLimitSettings(), _Table())
    runner = LimitsRunner(
        SharedLimits(store), leases, EventPublisher(bus), "e1", asyncio.get_running_loop()
    )
    peer, rule = (Demand("peer:p", max_concurrent=1),), (Demand("rule:r", max_cps=1, burst=1),)
    try:
        verdicts = [await runner.acquire(LimitQuery(f"c{n}", peer)) for n in range(5)]
        assert [v is not None and v.admitted for v in verdicts] == [True] + [False] * 4
        verdicts = [await runner.acquire(LimitQuery(f"r{n}", rule)) for n in range(2)]
        assert [v is not None and v.admitted for v in verdicts] == [True, False]
        await until(lambda: len(heard) >= 2)
        await asyncio.sleep(0.6)
        later = await runner.acquire(LimitQuery("c5", peer))
        assert later is not None and not later.admitted
        await until(lambda: len(heard) >= 3)
        told = [
            (e.type, *(e.data[k] for k in ("entity", "kind", "limit", "refused"))) for e in heard
        ]
        assert told == [
            ("edge.limit.reached", "peer:p", "concurrent", 1, 1),
            ("edge.limit.reached", "rule:r", "cps", 1, 1),
            ("edge.limit.reached", "peer:p", "concurrent", 1, 4),
        ]
        assert all((e.data["edge"], e.data["period"]) == ("e1", 0.5) for e in heard)
    finally:
        await runner.stop()
        await listener.close()
        await bus.close()
        await store.delete_namespace()
        await store.close()
