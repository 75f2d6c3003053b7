"""least_calls over the cluster on the real Redis: two workers (of two edges) exchange their
counts, and each balances on both; a worker that stops exchanging stops counting."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.edge.destinations import ActiveCalls
from services.edge.runtime.call_counts import CallCountsRunner
from shared.dispatcher import Call, Dispatcher, DispatcherSet, SetMember
from shared.dispatcher.loads import SharedCallCounts
from shared.store import Store

pytestmark = pytest.mark.integration
BOX1, BOX2 = "sip:box1.example.com", "sip:box2.example.com"
FARM = DispatcherSet(
    algorithm="least_calls", destinations=(SetMember(uri=BOX1), SetMember(uri=BOX2))
)


def runner(store: Store, name: str, calls: ActiveCalls) -> CallCountsRunner:
    counts = SharedCallCounts(store, name, ttl=1.5)
    return CallCountsRunner(counts, calls, 0.5, asyncio.get_running_loop())


def now() -> float:
    """The runner's clock (the loop's: monotonic, from the machine's boot). A call started at
    0.0 would be older than `MAX_CALL_AGE` on a machine up for more than 4 hours, and dropped
    from the counts at the runner's first exchange."""
    return asyncio.get_running_loop().time()


def first_choice(calls: ActiveCalls) -> str:
    return Dispatcher("farm", FARM).order(Call(), active_calls=calls.of_set("farm"))[0].uri


async def test_least_calls_balances_on_both_workers_counts(stores: list[Store]) -> None:
    edge_a, edge_b = ActiveCalls(), ActiveCalls()
    a, b = runner(stores[0], "a:1", edge_a), runner(stores[1], "b:1", edge_b)
    for n in range(3):  # edge A sent three calls to box1
        edge_a.branch_sent("farm", BOX1, "INVITE", f"a{n}", now())
    edge_b.branch_sent("farm", BOX2, "INVITE", "b0", now())  # edge B one to box2
    assert first_choice(edge_b) == BOX1  # alone, B would pile onto box1 (0 calls it knows of)
    await a.exchange()
    await b.exchange()
    assert dict(edge_b.of_set("farm")) == {BOX1: 3, BOX2: 1}
    assert first_choice(edge_b) == BOX2  # box1 holds three of A's
    edge_b.branch_sent("farm", BOX2, "INVITE", "b1", now())  # B's own calls count at once
    assert dict(edge_b.of_set("farm")) == {BOX1: 3, BOX2: 2}
    await a.exchange()
    assert dict(edge_a.of_set("farm")) == {BOX1: 3, BOX2: 1}  # B's second not sent yet
    edge_a.call_ended("a0")
    edge_a.call_ended("a1")
    assert dict(edge_a.of_set("farm")) == {BOX1: 1, BOX2: 1}
    await b.exchange()
    assert dict(edge_b.of_set("farm")) == {BOX1: 3, BOX2: 2}  # A's ends: at its next exchange
    await a.exchange()
    await b.exchange()
    assert dict(edge_b.of_set("farm")) == {BOX1: 1, BOX2: 2}
    assert first_choice(edge_b) == BOX1


async def b_knowing_one_call_of_a(
    stores: list[Store],
) -> tuple[ActiveCalls, CallCountsRunner]:
    """Worker A sent a call to box1 and exchanged; B's counts and runner, after B exchanged."""
    edge_a, edge_b = ActiveCalls(), ActiveCalls()
    a, b = runner(stores[0], "a:1", edge_a), runner(stores[1], "b:1", edge_b)
    edge_a.branch_sent("farm", BOX1, "INVITE", "a0", now())
    await a.exchange()
    await b.exchange()
    assert dict(edge_b.of_set("farm")) == {BOX1: 1}
    return edge_b, b


async def test_a_worker_that_stops_exchanging_stops_counting(stores: list[Store]) -> None:
    edge_b, b = await b_knowing_one_call_of_a(stores)
    await asyncio.sleep(1.6)  # A crashed: its counts lapse after their ttl
    await b.exchange()
    assert dict(edge_b.of_set("farm")) == {}


async def test_redis_away_balances_alone_after_a_few_intervals(stores: list[Store]) -> None:
    edge_b, b = await b_knowing_one_call_of_a(stores)
    unreachable = Store(aioredis.Redis.from_url("redis://127.0.0.1:1"), "none")
    try:
        b.counts = SharedCallCounts(unreachable, "b:1", ttl=1.5)
        await b.exchange()
        assert dict(edge_b.of_set("farm")) == {BOX1: 1}  # one failure: the view is kept
        await asyncio.sleep(2.1)
        await b.exchange()
        assert dict(edge_b.of_set("farm")) == {}
    finally:
        await unreachable.close()
