"""Fixtures of the edge runtime's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.store import Store
from tests.conftest import REDIS_URL


@pytest.fixture
async def stores(redis_store: Store) -> AsyncIterator[list[Store]]:
    """Two workers' own connections to one namespace of the real Redis (what each exchanges
    its counts through)."""
    found = [Store(aioredis.Redis.from_url(REDIS_URL), redis_store.namespace) for _ in range(2)]
    yield found
    for store in found:
        await store.close()
