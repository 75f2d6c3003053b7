"""The B2BUA's answered pairs in Redis, so that another edge carries a call on.

A pair's record (`B2bua.record`, 27 short fields) is a hash `b2bua:pair:{id}`; each leg's
dialog, the Call-ID and the edge's tag on it (what an in-dialog request names), points at
it from `b2bua:dialog:{call_id}:{tag}`. All three expire after the longest call the
cluster allows (`CALLMESH_CALL_LIMIT_MAX_CALL_DURATION`), each write renewing them, so a
pair whose far ends vanished without a BYE does not stay; a pair's end deletes them.
A relayed call's record holds one field more (`media`: `record.MEDIA_FIELD`); a hash
written before it reads without it, as unrelayed.

Writes leave in order from one background task (`PairWriter`): the call path never waits
for Redis. A write Redis refuses is logged and dropped: the call goes on on its edge,
and only its continuation elsewhere is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final, cast

from redis.exceptions import RedisError

from shared.store import Store

log = logging.getLogger("callmesh.edge.b2bua")

BACKLOG: Final = 10_000
"""Writes waiting at most; past it a write is dropped (logged): Redis is away or slow."""


class PairStates:
    """Reads and writes of the pairs' records (see the module docstring)."""

    def __init__(self, store: Store, ttl: float) -> None:
        self._store = store
        self._ttl = max(1, round(ttl))

    def pair_key(self, pair_id: str) -> str:
        return self._store.key("b2bua", "pair", pair_id)

    def dialog_key(self, call_id: str, tag: str) -> str:
        return self._store.key("b2bua", "dialog", call_id, tag)

    def _dialogs(self, record: Mapping[str, str]) -> list[str]:
        return [self.dialog_key(record[f"{s}_call_id"], record[f"{s}_local_tag"]) for s in "ab"]

    async def save(self, record: Mapping[str, str]) -> None:
        pair_key = self.pair_key(record["id"])
        pipe = self._store.redis.pipeline(transaction=True)
        pipe.hset(pair_key, mapping=cast(Any, dict(record)))
        pipe.expire(pair_key, self._ttl)
        for dialog in self._dialogs(record):
            pipe.set(dialog, record["id"], ex=self._ttl)
        await pipe.execute()

    async def delete(self, record: Mapping[str, str]) -> None:
        await self._store.redis.delete(self.pair_key(record["id"]), *self._dialogs(record))

    async def load(self, call_id: str, tag: str) -> dict[str, str] | None:
        """The record of the pair whose dialog is (`call_id`, the edge's `tag`), or None."""
        redis = self._store.redis
        pair_id = await redis.get(self.dialog_key(call_id, tag))
        if pair_id is None:
            return None
        found = await redis.hgetall(self.pair_key(_text(pair_id)))
        return {_text(k): _text(v) for k, v in found.items()} or None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class PairWriter:
    """Saves and deletes in the order asked, from one task; never blocks its caller."""

    def __init__(self, states: PairStates) -> None:
        self.states = states
        self._queue: asyncio.Queue[tuple[bool, Mapping[str, str]]] = asyncio.Queue(BACKLOG)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def save(self, record: Mapping[str, str]) -> None:
        self._put(True, record)

    def delete(self, record: Mapping[str, str]) -> None:
        self._put(False, record)

    def _put(self, save: bool, record: Mapping[str, str]) -> None:
        try:
            self._queue.put_nowait((save, record))
        except asyncio.QueueFull:
            log.warning(
                "B2BUA state of pair %s not written: %d writes waiting", record["id"], BACKLOG
            )

    async def _run(self) -> None:
        while True:
            save, record = await self._queue.get()
            try:
                await (self.states.save(record) if save else self.states.delete(record))
            except (RedisError, OSError) as error:
                log.warning("B2BUA state of pair %s not written: %s", record["id"], error)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
