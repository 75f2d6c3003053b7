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

Two transactions are open at once (``IN_FLIGHT``): while PostgreSQL runs one's
statements, this process decodes, folds and builds the rows of the other, the
two on different cores; one at a time, each waited for the other (in a drain
the service waited for the database half of its time in the transactions).
Two transactions naming the same call wait for each other on the call's lock,
and the fold's result does not depend on which commits first.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence

from services.accounting.store import Applied, RecordStore, unavailable
from shared.contracts.calls import CallEvent

MAX_BATCH = 1024
IN_FLIGHT = 2
"""Transactions committing at once: one in the database, one being prepared here; more would
only queue on the database's core."""


class _Request:
    """One :meth:`GroupCommit.apply` call: its events' results, filled in as slices commit."""

    __slots__ = ("future", "remaining", "results")

    def __init__(self, size: int, future: asyncio.Future[list[Applied | BaseException]]) -> None:
        self.results: list[Applied | BaseException] = [_PENDING] * size
        self.remaining = size
        self.future = future

    def settle(self, offset: int, results: Sequence[Applied | BaseException]) -> None:
        self.results[offset : offset + len(results)] = results
        self.remaining -= len(results)
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.results)


_PENDING = ConnectionError("not committed yet")
_Slice = tuple[_Request, int, Sequence[CallEvent]]
"""Up to ``max_batch`` events of a request, and where they start in it."""


class GroupCommit:
    def __init__(
        self, store: RecordStore, max_batch: int = MAX_BATCH, in_flight: int = IN_FLIGHT
    ) -> None:
        self.store = store
        self.max_batch = max_batch
        self._waiting: collections.deque[_Slice] = collections.deque()
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._slots = asyncio.Semaphore(in_flight)
        self._writes: set[asyncio.Task[None]] = set()

    async def apply(self, events: Sequence[CallEvent]) -> list[Applied | BaseException]:
        """:meth:`RecordStore.apply_many`, committed together with whatever else is waiting.

        Each event's result, or the error that kept it from being committed.
        A request larger than ``max_batch`` is committed in several transactions.
        """
        if not events:
            return []
        loop = asyncio.get_running_loop()
        request = _Request(len(events), loop.create_future())
        for offset in range(0, len(events), self.max_batch):
            self._waiting.append((request, offset, events[offset : offset + self.max_batch]))
        self._wakeup.set()
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_forever())
        return await request.future

    async def close(self) -> None:
        """Stop writing; events still waiting fail as if the database were away."""
        tasks = [task for task in (self._writer, *self._writes) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail(list(self._waiting), ConnectionError("the accounting service is stopping"))
        self._waiting.clear()

    async def _write_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._waiting:
                await self._slots.acquire()  # what waits meanwhile joins the next transaction
                batch = [self._waiting.popleft()]
                size = len(batch[0][2])
                while self._waiting and size + len(self._waiting[0][2]) <= self.max_batch:
                    size += len(self._waiting[0][2])
                    batch.append(self._waiting.popleft())
                task = asyncio.get_running_loop().create_task(self._write_in_slot(batch))
                self._writes.add(task)
                task.add_done_callback(self._writes.discard)

    async def _write_in_slot(self, batch: list[_Slice]) -> None:
        try:
            await self._write(batch)
        except BaseException:  # stopping (or worse): its callers must not wait for ever
            self._fail(batch, ConnectionError("the accounting service is stopping"))
            raise
        finally:
            self._slots.release()

    async def _write(self, batch: list[_Slice]) -> None:
        events = [event for _, _, part in batch for event in part]
        try:
            results: Sequence[Applied | BaseException] = await self.store.apply_many(events)
        except Exception as error:
            if unavailable(error) or len(events) == 1:
                self._fail(batch, error)
                return
            for request, offset, part in batch:
                for n, event in enumerate(part):
                    await self._write([(request, offset + n, [event])])
            return
        at = 0
        for request, offset, part in batch:
            request.settle(offset, results[at : at + len(part)])
            at += len(part)

    @staticmethod
    def _fail(batch: list[_Slice], error: Exception) -> None:
        for request, offset, part in batch:
            request.settle(offset, [error] * len(part))
