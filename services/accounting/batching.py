"""Group commit: the batches of concurrent queue consumers applied in one transaction.

Why: a commit waits for the database's disk flush (milliseconds), and a
call's events taken by two consumers would otherwise be folded twice, one
transaction waiting for the other's lock.  Each consumer still waits for its
own events' commit before its messages are acknowledged; it just shares that
commit with the consumers working beside it (``CALLMESH_ACCOUNTING_CONSUMERS``
of them), and while one transaction runs the next batches gather.  A
transaction that fails for a reason other than the database being away is
retried event by event, so one bad event cannot take its neighbours to the
dead queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from services.accounting.store import Applied, RecordStore, unavailable
from shared.contracts.calls import CallEvent

MAX_BATCH = 1024


class GroupCommit:
    def __init__(self, store: RecordStore, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._waiting: list[tuple[CallEvent, asyncio.Future[Applied]]] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def apply(self, events: Sequence[CallEvent]) -> list[Applied | BaseException]:
        """:meth:`RecordStore.apply_many`, committed together with whatever else is waiting.

        Each event's result, or the error that kept it from being committed.
        """
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Applied]] = [loop.create_future() for _ in events]
        self._waiting.extend(zip(events, futures, strict=True))
        self._wakeup.set()
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_forever())
        return await asyncio.gather(*futures, return_exceptions=True)

    async def close(self) -> None:
        """Stop writing; events still waiting fail as if the database were away."""
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        self._fail(self._waiting, ConnectionError("the accounting service is stopping"))
        self._waiting = []

    async def _write_forever(self) -> None:
        batch: list[tuple[CallEvent, asyncio.Future[Applied]]] = []
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._waiting:
                    batch = self._waiting[: self.max_batch]
                    del self._waiting[: self.max_batch]
                    await self._write(batch)
                    batch = []
        finally:
            self._fail(batch, ConnectionError("the accounting service is stopping"))

    async def _write(self, batch: list[tuple[CallEvent, asyncio.Future[Applied]]]) -> None:
        try:
            results = await self.store.apply_many([event for event, _ in batch])
        except Exception as error:
            if unavailable(error) or len(batch) == 1:
                self._fail(batch, error)
                return
            for one in batch:
                await self._write([one])
            return
        for (_, future), applied in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(applied)

    @staticmethod
    def _fail(batch: list[tuple[CallEvent, asyncio.Future[Applied]]], error: Exception) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)
