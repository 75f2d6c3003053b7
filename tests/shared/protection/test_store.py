"""The protection state in the store: cluster-wide counts, blocks with expiry, the allow-list.

Against the real Redis (two clients: two edges) and the embedded store
(the same Lua script on fakeredis).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared.protection import AuthFailureSettings, ProtectionStore
from shared.protection.store import AllowEntry
from shared.settings import Settings
from shared.store import Store
from shared.store.embedded import open_embedded
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.integration
SETTINGS = AuthFailureSettings(window=60, block_after=4, source_block_after=6, block_time=30)
ALICE = "alice@example.com"


@pytest.fixture
async def other_edge(redis_store: Store) -> AsyncIterator[ProtectionStore]:
    """A second client on the same Redis and namespace, as another edge has."""
    store = Store(aioredis.Redis.from_url(REDIS_URL), redis_store.namespace)
    yield ProtectionStore(store)
    await store.close()


async def test_failures_count_across_edges_and_block_once(
    redis_store: Store, other_edge: ProtectionStore
) -> None:
    edge_a = ProtectionStore(redis_store)
    counts = [
        await (edge_a if n % 2 else other_edge).record_failure(
            ALICE, f"192.0.2.{n}", SETTINGS, now=1000.0 + n, edge="a"
        )
        for n in range(4)
    ]
    assert [c.account for c in counts] == [1, 2, 3, 4]
    assert [c.account_blocked for c in counts] == [False, False, False, True]
    [block] = await other_edge.blocks(1004.0)
    assert (block.kind, block.key, block.until) == ("account", ALICE, 1033.0)
    assert block.reason == "authentication failures" and block.edge == "a"
    # The count starts over with the block; a failure during it blocks nothing new.
    again = await edge_a.record_failure(ALICE, "192.0.2.9", SETTINGS, now=1005.0, edge="a")
    assert (again.account, again.account_blocked) == (1, False)
    assert await edge_a.blocks(1033.0) == []  # over


async def test_concurrent_failures_from_two_edges_start_one_block(
    redis_store: Store, other_edge: ProtectionStore
) -> None:
    edge_a = ProtectionStore(redis_store)
    results = await asyncio.gather(
        *(
            (edge_a if n % 2 else other_edge).record_failure(
                f"user{n % 3}@example.com", "198.51.100.5", SETTINGS, now=2000.0, edge="x"
            )
            for n in range(20)
        )
    )
    assert sum(r.source_blocked for r in results) == 1  # one source, over 6 failures
    assert [r.source for r in results if r.source_blocked] == [6]
    sources = await edge_a.blocks(2000.0, ("source",))
    assert [b.key for b in sources] == ["198.51.100.5"]


async def test_an_allow_listed_source_is_not_counted(redis_store: Store) -> None:
    store = ProtectionStore(redis_store)
    for n in range(10):
        counts = await store.record_failure(f"u{n}@example.com", None, SETTINGS, now=1.0, edge="a")
        assert counts.source == 0
    assert await store.blocks(1.0) == []


async def test_counters_expire_with_the_window(redis_store: Store) -> None:
    store = ProtectionStore(redis_store)
    await store.record_failure(ALICE, "192.0.2.1", SETTINGS, now=1.0, edge="a")
    for kind, key in (("account", ALICE), ("source", "192.0.2.1")):
        ttl = await redis_store.redis.ttl(redis_store.key("protection", "failures", kind, key))
        assert 0 < ttl <= SETTINGS.window


async def test_clear_lifts_a_block_and_its_count(redis_store: Store) -> None:
    store = ProtectionStore(redis_store)
    for _ in range(4):
        await store.record_failure(ALICE, "192.0.2.1", SETTINGS, now=10.0, edge="a")
    assert await store.record_failure(ALICE, "192.0.2.1", SETTINGS, now=10.0, edge="a")
    assert await store.clear("account", ALICE) is True
    assert await store.blocks(10.0, ("account",)) == []
    assert await store.clear("account", ALICE) is False
    assert await store.clear("source", "192.0.2.1") is True  # its count (5) is forgotten
    counts = await store.record_failure(ALICE, "192.0.2.1", SETTINGS, now=11.0, edge="a")
    assert counts.source == 1


async def test_flood_and_scanner_blocks_are_listed_with_their_end(redis_store: Store) -> None:
    store = ProtectionStore(redis_store)
    assert await store.add_block(
        "flood", "192.0.2.66", 120.0, reason="90 requests", edge="e1", now=0.0
    )
    assert not await store.add_block("flood", "192.0.2.66", 130.0, reason="x", edge="e2", now=1.0)
    assert await store.add_block(
        "scanner", "192.0.2.67", 3600.0, reason="sweep", edge="e1", now=1.0
    )
    listed = {(b.kind, b.key, b.until, b.reason) for b in await store.blocks(2.0)}
    assert listed == {
        ("flood", "192.0.2.66", 120.0, "90 requests"),
        ("scanner", "192.0.2.67", 3600.0, "sweep"),
    }
    # Expired blocks leave the store at the next write.
    await store.add_block("flood", "192.0.2.68", 500.0, reason="x", edge="e1", now=200.0)
    detail = await redis_store.redis.hkeys(redis_store.key("protection", "blocks", "detail"))
    assert sorted(detail) == [b"flood|192.0.2.68", b"scanner|192.0.2.67"]


async def test_the_allow_list_round_trips_and_refuses_what_is_no_network(
    redis_store: Store,
) -> None:
    store = ProtectionStore(redis_store)
    entry = AllowEntry(network="203.0.113.7/24", description="office NAT")
    assert entry.network == "203.0.113.0/24"
    assert await store.put_allowed("office", entry) is True
    assert await store.put_allowed("office", entry) is False
    assert await store.allowlist() == {"office": entry}
    assert await store.delete_allowed("office") is True
    assert await store.allowlist() == {}
    for bad in ("example.com", "10.0.0.0/33", "", "udp:10.0.0.1:5060"):
        with pytest.raises(ValueError, match=r"network|at least"):
            AllowEntry(network=bad)


async def test_the_embedded_store_runs_the_same_script(tmp_path: Path) -> None:
    embedded = await open_embedded(Settings(data_dir=str(tmp_path), namespace="emb"))
    try:
        store = ProtectionStore(embedded)
        counts = [
            await store.record_failure(ALICE, "192.0.2.1", SETTINGS, now=5.0, edge="a")
            for _ in range(4)
        ]
        assert counts[-1].account_blocked
        assert [b.key for b in await store.blocks(5.0)] == [ALICE]
    finally:
        await embedded.close()
