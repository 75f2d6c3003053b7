"""The all-in-one's store when no Redis is configured: fakeredis in-process.

Why fakeredis: the services then run the very same redis.asyncio commands
(including Lua scripts and MULTI/EXEC) against it as against a real Redis, so
the embedded mode exercises no second code path. What it keeps across restarts:
a snapshot of every key (with its remaining time to live) is written to
``{CALLMESH_DATA_DIR}/store-{namespace}.snapshot`` every few seconds and on a
clean stop, and loaded at start; a crash loses at most the last interval.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import fakeredis
import orjson

from shared.settings import Settings
from shared.store.base import Store

log = logging.getLogger("callmesh.store")

SNAPSHOT_INTERVAL = 5.0


class EmbeddedStore(Store):
    """A :class:`Store` over fakeredis that snapshots itself to a file."""

    def __init__(self, client: Any, namespace: str, path: Path) -> None:
        super().__init__(client, namespace)
        self.path = path
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> int:
        try:
            data = await asyncio.to_thread(self.path.read_bytes)
        except FileNotFoundError:
            return 0
        entries = orjson.loads(data)
        for entry in entries:
            ttl = entry["ttl"]  # milliseconds left, 0 for a key without expiry
            await self.redis.restore(
                base64.b64decode(entry["key"]), ttl, base64.b64decode(entry["dump"]), replace=True
            )
        return len(entries)

    async def snapshot(self) -> None:
        entries = []
        async for key in self.redis.scan_iter(count=1000):
            dump = await self.redis.dump(key)
            ttl = await self.redis.pttl(key)
            if dump is None or ttl in (-2, 0):
                continue  # gone, or expiring right now
            entries.append(
                {
                    "key": base64.b64encode(key).decode(),
                    "dump": base64.b64encode(dump).decode(),
                    "ttl": ttl if ttl > 0 else 0,
                }
            )
        await asyncio.to_thread(self._write, orjson.dumps(entries))

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".store-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        Path(tmp).replace(self.path)

    def start_snapshots(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._snapshot_forever())

    async def _snapshot_forever(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL)
            try:
                await self.snapshot()
            except OSError as error:
                log.warning("store snapshot failed", extra={"error": str(error)})

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.snapshot()
        except OSError as error:
            log.warning("store snapshot failed", extra={"error": str(error)})
        await super().close()


async def open_embedded(settings: Settings) -> EmbeddedStore:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    path = Path(settings.data_dir) / f"store-{settings.namespace}.snapshot"
    store = EmbeddedStore(client, settings.namespace, path)
    restored = await store.load()
    if restored:
        log.info("embedded store restored", extra={"keys": restored, "path": str(path)})
    store.start_snapshots()
    return store
