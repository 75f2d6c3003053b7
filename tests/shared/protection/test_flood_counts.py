"""The flood counts on the real Redis: four workers' batches add up to one window per source,
a block any of them causes is news for all, and an operator's clear starts the count over.
Redis's clock is passed in (``now_ms``) where the test is about time."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.protection import ProtectionStore
from shared.protection.flood_counts import Exchanged, FloodCounts
from shared.store import Store
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration
FLOODER, OTHER = "192.0.2.66", "192.0.2.10"


async def exchange(
    worker: FloodCounts, counts: dict[str, int], since: int | None, now: int | None = None
) -> Exchanged:
    """A batch with a 10 s period, a limit of 100 and a block of 60 s."""
    return await worker.exchange(
        counts, period=10.0, limit=100, block_time=60.0, since_ms=since, now_ms=now
    )


@pytest.fixture
async def workers(redis_store: Store) -> AsyncIterator[list[FloodCounts]]:
    """Four clients on one namespace: two edges of two workers each."""
    stores = [Store(aioredis.Redis.from_url(REDIS_URL), redis_store.namespace) for _ in range(4)]
    yield [FloodCounts(store) for store in stores]
    for store in stores:
        await store.close()


async def test_four_workers_counts_add_up_and_the_one_past_the_limit_blocks_for_all(
    workers: list[FloodCounts],
) -> None:
    t = 1_000_000
    for n, worker in enumerate(workers[:3]):
        answer = await exchange(worker, {FLOODER: 30}, None, t + n)
        assert answer.windows[FLOODER] == (0, 30 * (n + 1), n / 1000)
        assert answer.blocks == {}
    last = await exchange(workers[3], {FLOODER: 11, OTHER: 1}, t, t + 3)
    assert last.windows[FLOODER][1] == 101  # past 100 on no single worker: 30, 30, 30, 11
    assert last.blocks == {FLOODER: pytest.approx(60.0, abs=0.5)}
    assert last.started == (FLOODER,)  # this batch began it: this worker announces it
    # The others hear of it from their next batch, even an empty one.
    news = await exchange(workers[0], {}, t, t + 50)
    assert set(news.blocks) == {FLOODER}
    again = await exchange(workers[1], {FLOODER: 5}, t, t + 60)
    assert again.started == ()  # extended, not begun: announced once
    assert news.cursor_ms == t + 50


async def test_the_window_slides_from_one_period_to_the_next(workers: list[FloodCounts]) -> None:
    t = 2_000_000
    await exchange(workers[0], {FLOODER: 80}, None, t)
    later = await exchange(workers[1], {FLOODER: 30}, t, t + 15_000)
    # Half-way into the next period: 80 * 0.5 + 30 = 70, under the limit.
    assert later.windows[FLOODER] == (80, 30, 5.0)
    assert later.blocks == {}
    gone = await exchange(workers[1], {FLOODER: 1}, t, t + 40_000)
    assert gone.windows[FLOODER][:2] == (0, 1)  # periods later: nothing carried over


async def test_an_operators_clear_starts_the_clusters_count_over(
    redis_store: Store, workers: list[FloodCounts]
) -> None:
    blocked = await exchange(workers[0], {FLOODER: 150}, None)
    assert FLOODER in blocked.blocks
    await ProtectionStore(redis_store).clear("flood", FLOODER)
    after = await exchange(workers[1], {FLOODER: 1}, blocked.cursor_ms)
    assert after.windows[FLOODER][:2] == (0, 1)
    assert after.blocks == {}
