"""The location feed's Redis reads: one per missing answer, however many calls miss it."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from services.edge.feeds.location import LocationFeed
from services.edge.location.directory import (
    Answer,
    Directory,
    DomainQuery,
    NonceCountQuery,
    Query,
)
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.registrar.layout import domains_key
from shared.registrar.nonce_counts import NonceCounts
from shared.store import Store

pytestmark = pytest.mark.integration


class CountingFeed(LocationFeed):
    """The real feed on the real Redis, counting the reads it makes."""

    reads: int = 0

    async def _read(self, query: Query) -> Answer:
        self.reads += 1
        return await super()._read(query)


def feed_on(store: Store) -> CountingFeed:
    bus = MemoryBus(MemoryBroker(), store.namespace, "edge", "w1")
    return CountingFeed(Directory(), store, bus, NonceCounts(store, 300))


async def test_a_burst_of_calls_missing_one_domain_reads_it_once(redis_store: Store) -> None:
    await redis_store.redis.sadd(domains_key(redis_store), "example.com")
    feed = feed_on(redis_store)
    await asyncio.gather(*(feed.resolve(DomainQuery("example.com")) for _ in range(200)))
    assert feed.reads == 1
    assert feed.directory.is_local_domain("example.com", asyncio.get_running_loop().time())
    await feed.resolve(DomainQuery("other.example"))  # another answer: its own read
    assert feed.reads == 2


async def test_a_failed_read_fails_every_call_waiting_on_it_and_the_next_miss_reads_again(
    namespace: str,
) -> None:
    store = Store(aioredis.Redis.from_url("redis://127.0.0.1:1/0"), namespace)  # nothing there
    feed = feed_on(store)
    results = await asyncio.gather(
        *(feed.resolve(DomainQuery("example.com")) for _ in range(20)), return_exceptions=True
    )
    assert feed.reads == 1
    assert all(isinstance(result, OSError | aioredis.RedisError) for result in results)
    with pytest.raises((OSError, aioredis.RedisError)):
        await feed.resolve(DomainQuery("example.com"))
    assert feed.reads == 2
    await store.close()


async def test_a_nonce_count_is_claimed_per_request_never_shared(redis_store: Store) -> None:
    feed = feed_on(redis_store)
    await asyncio.gather(*(feed.resolve(NonceCountQuery("n1", 1)) for _ in range(3)))
    assert feed.reads == 3
