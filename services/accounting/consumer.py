"""From a queue message to a committed record and, when complete, ``accounting.cdr.completed``.

The order is what makes billing exactly-once: commit (event stored once,
records refolded), then publish, then return so the bus acknowledges.  A
crash anywhere before the acknowledgement redelivers the message; its event
is then a duplicate that changes nothing, and the completion is published
again with the same version (at-least-once, de-duplicated by version).

A message that can never be applied is dead-lettered with its reason.  A
database that is down is retried with backoff, holding the message (the queue
waits: records must not be lost); while the service stops, the message goes
back to the queue instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from services.accounting import metrics
from services.accounting.events import BadEventError, decode
from services.accounting.store import Applied, unavailable
from shared.bus import Bus, BusUnavailable, DeadLetter, Requeue, WorkMessage
from shared.contracts.accounting import CdrCompleted
from shared.contracts.calls import CallEvent

MAX_RETRY_DELAY = 30.0


class Announcer:
    """Publishes the completed records of an applied change."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def __call__(self, applied: Applied) -> None:
        """Publish each complete record this change wrote, or re-publish after a redelivery."""
        for stored in applied.records:
            if stored.record.state == "complete" and (stored.changed or applied.duplicate):
                await self.bus.publish(CdrCompleted(version=stored.version, record=stored.record))
                metrics.COMPLETED.inc()


class CallEventHandler:
    """The work handler of ``{ns}.accounting.calls``."""

    def __init__(
        self,
        apply: Callable[[CallEvent], Awaitable[Applied]],
        announce: Callable[[Applied], Awaitable[None]],
        stopping: asyncio.Event,
        log: logging.Logger,
        retry_delay: float = 1.0,
    ) -> None:
        self.apply = apply
        self.announce = announce
        self.stopping = stopping
        self.log = log
        self.retry_delay = retry_delay

    async def __call__(self, message: WorkMessage) -> None:
        try:
            event = decode(message.body)
        except BadEventError as error:
            metrics.EVENTS.labels("dead").inc()
            self.log.warning("dead-lettered a call event: %s", error)
            raise DeadLetter(str(error)) from None
        applied = await self._apply(lambda: self.apply(event))
        metrics.EVENTS.labels("duplicate" if applied.duplicate else "stored").inc()
        metrics.RECORDS_WRITTEN.inc(sum(stored.changed for stored in applied.records))
        if not applied.duplicate:
            metrics.LAG.observe(max(0.0, time.time() - event.at))
        try:
            await self.announce(applied)
        except BusUnavailable as error:
            # Committed but not announced: redelivery finds a duplicate and announces it.
            self.log.warning("cannot publish a completed record yet: %s", error)
            raise Requeue from None

    async def _apply(self, write: Callable[[], Awaitable[Applied]]) -> Applied:
        """``write()`` until it commits; :class:`Requeue` if the service stops meanwhile."""
        delay = self.retry_delay
        while True:
            try:
                return await write()
            except Exception as error:
                if not unavailable(error):
                    raise
                metrics.STORE_ERRORS.inc()
                self.log.warning(
                    "accounting database unavailable, retrying in %.1f s: %s",
                    delay,
                    f"{type(error).__name__}: {error}".splitlines()[0],
                )
            if self.stopping.is_set():
                raise Requeue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            if self.stopping.is_set():
                raise Requeue
            delay = min(delay * 2, MAX_RETRY_DELAY)
