"""The registrar's events leave in order from one background task, off the REGISTER path.

A REGISTER is answered once its binding is in Redis; waiting for the
broker's confirm of the event first cost a round trip per REGISTER for
nothing a phone needs: Redis is the record, and an edge that misses an event
(a ``seq`` gap, a reconnect) reads Redis again.  One task publishes, in the
order the events were posted, so the edges see one gapless ``seq`` stream.
While the broker is away, up to ``limit`` events wait; beyond that the oldest
are dropped (counted in the log), since the edges clear their caches when
they reconnect anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from shared.background import cancel_and_wait
from shared.bus import Bus, BusUnavailable
from shared.contracts.event import Event

DEFAULT_LIMIT = 100_000
STOP_FLUSH_TIMEOUT = 5.0


class EventOutbox:
    def __init__(self, bus: Bus, log: logging.Logger, limit: int = DEFAULT_LIMIT) -> None:
        self.bus = bus
        self.log = log
        self._waiting: deque[Event] = deque(maxlen=limit)
        self._posted = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.dropped = 0

    def post(self, event: Event) -> None:
        """Queue ``event`` for publishing; never waits."""
        if len(self._waiting) == self._waiting.maxlen:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                self.log.warning("event outbox full; %d events dropped", self.dropped)
        self._waiting.append(event)
        self._posted.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Publish what is waiting (bounded by the bus's own wait), then stop."""
        if self._task is None:
            return
        self._stopping = True
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(BusUnavailable, TimeoutError):
            async with asyncio.timeout(STOP_FLUSH_TIMEOUT):
                await self.flush()

    async def flush(self) -> None:
        """Publish every waiting event now, in order (raises ``BusUnavailable``)."""
        while self._waiting:
            await self.bus.publish(self._waiting[0])
            self._waiting.popleft()

    async def _run(self) -> None:
        while not self._stopping:
            await self._posted.wait()
            self._posted.clear()
            try:
                await self.flush()
            except BusUnavailable as error:
                self.log.warning("events wait for the broker: %s", error)
                await asyncio.sleep(1.0)
                self._posted.set()
            except Exception as error:  # one unpublishable event must not stop the others
                self.log.warning("event dropped: %s", f"{type(error).__name__}: {error}")
                self._waiting.popleft()
                self._posted.set()
