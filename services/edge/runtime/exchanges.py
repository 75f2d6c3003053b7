"""What the edge's batched exchanges with Redis have in common: a task that loops, and one
log line when Redis goes away and one when it is back (not one per failed exchange)."""

from __future__ import annotations

import asyncio
import contextlib
import logging


class ExchangeLoop:
    """A worker's loop of exchanges with Redis, ended by `stop`.

    Its waits are bounded by `asyncio.timeout`, never `asyncio.wait_for`: on Python 3.11
    `wait_for` returns its result instead of raising when a cancel lands just as what it
    waits for finishes, so `stop`'s cancel was lost, the loop went on, and `stop` waited
    for it for good.
    """

    def __init__(self, what: str, log: logging.Logger, loop: asyncio.AbstractEventLoop) -> None:
        self._what = what
        self._log = log
        self._loop = loop
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self._loop.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        raise NotImplementedError

    def _failed(self, error: Exception, meanwhile: str) -> None:
        if not self._failing:
            self._log.warning("%s: Redis unavailable, %s: %s", self._what, meanwhile, error)
        self._failing = True

    def _answered(self) -> None:
        if self._failing:
            self._log.info("%s: Redis available again", self._what)
        self._failing = False
