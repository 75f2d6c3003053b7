"""Following a Sentinel failover the moment it is announced: the old primary's connections dropped.

Why: the pool asks the Sentinels for the primary only when it opens a
connection. A pooled connection to a primary that went silent (a hung box, a
cut network) waits out its socket timeout (5 s, the edge's whole wait for the
registrar) before its retry asks again; one to a primary deposed while still
alive (a Sentinel that judged a slow primary down, a partition that heals)
goes on writing there, and with no replica left to ``WAIT`` for those writes
are acknowledged and then vanish when the Sentinels turn it into a replica,
seconds later. Found by ``tests/services/registrar/test_redis_failover.py``
and the fault drill (a second failover right after the first lost 131
acknowledged bindings).

Sentinels announce every failover on their ``+switch-master`` channel. The
watcher listens to one Sentinel at a time (the next when it stops answering)
and, on a switch of its service, drops every connection of the pool, in use
or idle: the commands on them fail at once and their retry
(`shared.store.client.DeadlineRetry`) connects to the primary the Sentinels
name now. A switch announced while no Sentinel was heard is caught by asking
for the primary after each subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress

import redis.asyncio as aioredis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import RedisError

CHANNEL = "+switch-master"
QUIET = 1.0
"""Seconds without a message before the Sentinel is pinged."""
SILENT = 3.0
"""Seconds without any answer (message or pong) before the next Sentinel is tried."""

log = logging.getLogger("callmesh.store")


class SwitchWatcher:
    """Drops ``pool``'s connections when the Sentinels name a new primary; see the module doc."""

    def __init__(self, pool: SentinelConnectionPool, on_switch: Callable[[], None]) -> None:
        self.pool = pool
        self.on_switch = on_switch
        """Called after the connections were dropped (the store recounts its replicas)."""
        self._task: asyncio.Task[None] | None = None
        self._announced: str | None = None
        """The primary of the last switch handled: each is announced by every Sentinel and
        may be seen by `_check` first; the connections are dropped once."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sentinel-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        sentinels: list[aioredis.Redis] = self.pool.sentinel_manager.sentinels
        while True:
            for sentinel in list(sentinels):
                try:
                    await self._listen(sentinel)
                except (RedisError, OSError, TimeoutError) as error:
                    log.debug("Sentinel not heard, trying the next", extra={"error": str(error)})
            await asyncio.sleep(QUIET)

    async def _listen(self, sentinel: aioredis.Redis) -> None:
        """Until the Sentinel fails or stays silent for `SILENT` seconds."""
        loop = asyncio.get_running_loop()
        async with sentinel.pubsub() as pubsub:
            await pubsub.subscribe(CHANNEL)
            heard = loop.time()
            await self._check()
            while loop.time() - heard < SILENT:
                message = await pubsub.get_message(timeout=QUIET)
                if message is None:
                    await pubsub.ping()
                    continue
                heard = loop.time()
                # "<service> <old host> <old port> <new host> <new port>"
                words = message["data"].decode().split() if message["type"] == "message" else []
                if len(words) == 5 and words[0] == self.pool.service_name:
                    await self._switch(f"{words[3]}:{words[4]}", f"{words[1]}:{words[2]}")
        raise TimeoutError(f"no answer from the Sentinel in {SILENT:g} s")

    async def _check(self) -> None:
        """A switch missed while not subscribed: the primary now is not the pool's."""
        known = self.pool.master_address
        if known is None:
            return
        now = await self.pool.sentinel_manager.discover_master(self.pool.service_name)
        if tuple(now) != tuple(known):
            await self._switch(f"{now[0]}:{now[1]}", f"{known[0]}:{known[1]}")

    async def _switch(self, new: str, old: str) -> None:
        if new == self._announced:
            return
        self._announced = new
        log.warning("Redis primary switched: dropping the old primary's connections",
                    extra={"old": old, "new": new})  # the message whole on its line  # fmt: skip
        with suppress(RedisError, OSError):  # a connection that fails to close is closed anyway
            await self.pool.disconnect(inuse_connections=True)
        self.on_switch()
