"""Namespaced access to Redis, real or embedded."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from shared.settings import Settings


class Store:
    """A pooled Redis client plus the namespace every key is prefixed with."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.redis = client
        self.namespace = namespace
        self._prefix = f"{namespace}:"

    def key(self, *parts: str) -> str:
        """``key("routing", "rules")`` → ``"{ns}:routing:rules"``."""
        return self._prefix + ":".join(parts)

    async def ping(self) -> bool:
        """Whether the store answers now (for ``/readyz``); never raises."""
        try:
            return bool(await self.redis.ping())
        except (aioredis.RedisError, OSError):
            return False

    async def delete_namespace(self) -> int:
        """Remove every key of this namespace (tests clean up with it)."""
        removed = 0
        async for batch in _batched(self.redis.scan_iter(match=self._prefix + "*", count=1000)):
            removed += await self.redis.unlink(*batch)
        return removed

    async def close(self) -> None:
        await self.redis.aclose()


async def _batched(keys: Any, size: int = 500) -> Any:
    batch: list[Any] = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


async def open_store(settings: Settings) -> Store:
    """The store the settings ask for: Redis at ``CALLMESH_REDIS_URL``, else embedded."""
    if settings.redis_url:
        client = aioredis.Redis.from_url(
            settings.redis_url,
            max_connections=64,
            health_check_interval=10,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry_on_timeout=True,
        )
        return Store(client, settings.namespace)
    from shared.store.embedded import open_embedded

    return await open_embedded(settings)
