"""Namespaced access to Redis, real or embedded."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from shared.store.client import NotReplicatedError, redis_client
from shared.store.failover import SwitchWatcher
from shared.store.settings import StoreSettings

if TYPE_CHECKING:  # the settings read the URL forms of this package at start
    from shared.settings import Settings


REPLICA_RECOUNT = 2.0
"""Seconds between two counts of the primary's replicas (``INFO replication``)."""


class Store:
    """A pooled Redis client plus the namespace every key is prefixed with."""

    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
    ) -> None:
        self.redis = client
        self.namespace = namespace
        self._prefix = f"{namespace}:"
        self.wait_replicas = wait_replicas
        """Replicas that must hold a durable write before it counts (``WAIT``); 0: none."""
        self.wait_timeout_ms = wait_timeout_ms
        self._replicas = 0
        self._counted_at = -REPLICA_RECOUNT
        self._watcher: SwitchWatcher | None = None

    def follow_failovers(self) -> None:
        """With a Sentinel URL: drop the old primary's connections the moment the Sentinels
        announce a new one (`shared.store.failover`); nothing with a plain URL."""
        pool = self.redis.connection_pool
        if isinstance(pool, SentinelConnectionPool) and self._watcher is None:
            self._watcher = SwitchWatcher(pool, on_switch=self._recount)
            self._watcher.start()

    def _recount(self) -> None:
        """The next durable write counts the new primary's replicas first: it may have none
        yet, and a `WAIT` for the old count would hold that write for its whole timeout."""
        self._counted_at = -REPLICA_RECOUNT

    def key(self, *parts: str) -> str:
        """``key("routing", "rules")`` → ``"{ns}:routing:rules"``."""
        return self._prefix + ":".join(parts)

    async def durable(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a write ``script`` that must survive a failover.

        With ``wait_replicas``, the script and its ``WAIT`` go on one connection
        (WAIT counts the replicas holding that connection's writes), asking for
        ``wait_replicas`` or the replicas the primary has now if fewer: a write is
        acknowledged once every replica Sentinel could promote holds it. A primary
        left alone after a failover thus keeps taking writes (nothing could be
        promoted over it) instead of refusing all of them until a replica is back.
        Too few acknowledgements in time raise :class:`NotReplicatedError`: the
        write is on the primary but unacknowledged, like any write whose answer
        was lost, and the caller answers 503.
        """
        wanted = await self._replicas_to_wait()
        if wanted <= 0:
            return await script(keys=keys, args=args)
        try:
            result, acknowledged = await self._run_and_wait(script, keys, args, wanted)
        except NoScriptError:
            # The pipeline checked its script on one server and ran on another: its retry
            # after a lost connection reaches the promoted replica, which holds no script
            # (Redis does not replicate SCRIPT LOAD).  Nothing ran; a new pipeline loads it.
            result, acknowledged = await self._run_and_wait(script, keys, args, wanted)
        if int(acknowledged) < wanted and int(acknowledged) < await self._count_replicas(wanted):
            raise NotReplicatedError(
                f"{acknowledged} of {wanted} replica(s) took the write "
                f"within {self.wait_timeout_ms} ms"
            )
        return result

    async def _run_and_wait(
        self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any], wanted: int
    ) -> tuple[Any, Any]:
        """The script and a ``WAIT`` for `wanted` replicas, on one connection."""
        async with self.redis.pipeline(transaction=False) as pipe:
            await script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", wanted, self.wait_timeout_ms)
            result, acknowledged = await pipe.execute()
        return result, acknowledged

    async def _replicas_to_wait(self) -> int:
        """``wait_replicas``, or fewer when the primary has fewer (counted every few seconds)."""
        if self.wait_replicas <= 0:
            return 0
        if time.monotonic() - self._counted_at >= REPLICA_RECOUNT:
            return await self._count_replicas(self.wait_replicas)
        return min(self.wait_replicas, self._replicas)

    async def _count_replicas(self, wanted: int) -> int:
        """Count the primary's replicas now (after a failover, say: a WAIT that fell short
        on a primary with fewer replicas than before is still every replica's)."""
        info = await self.redis.info("replication")
        self._replicas, self._counted_at = int(info.get("connected_slaves", 0)), time.monotonic()
        return min(wanted, self._replicas)

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
        if self._watcher is not None:
            await self._watcher.stop()
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


async def open_store(settings: Settings, store: StoreSettings | None = None) -> Store:
    """The store the settings ask for: Redis at ``CALLMESH_REDIS_URL``, else embedded;
    ``store`` (default: from the environment) bounds waits and names the replicas to wait for."""
    if settings.redis_url:
        store = store or StoreSettings()
        client = redis_client(
            settings.redis_url,
            store.redis_wait,
            max_connections=64,
            health_check_interval=10,
            socket_connect_timeout=2,
            socket_timeout=5,
        )
        opened = Store(
            client,
            settings.namespace,
            wait_replicas=store.replicas_to_wait(settings.redis_url),
            wait_timeout_ms=store.redis_wait_replicas_timeout_ms,
        )
        opened.follow_failovers()
        return opened
    from shared.store.embedded import open_embedded

    return await open_embedded(settings)
