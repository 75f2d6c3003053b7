"""From a queue message to a committed record and, when complete, ``accounting.cdr.completed``.

The order is what makes billing exactly-once: commit (event stored once,
records refolded), then publish, then return so the bus acknowledges.  A
crash anywhere before the acknowledgement redelivers the message; its event
is then a duplicate that changes nothing, and the completion is published
again with the same version (at-least-once, de-duplicated by version).

Messages come in batches (what waits on the queue): their events are
committed together and the bus acknowledges the batch with one frame, only
after this handler returned.  A message that can never be applied is
dead-lettered with its reason.  A database that is down is retried with
backoff, holding the messages (the queue waits: records must not be lost);
while the service stops, they go back to the queue instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from services.accounting import metrics
from services.accounting.events import BadEventError, decode
from services.accounting.store import Applied, StoredRecord, unavailable
from shared.bus import Bus, BusUnavailable, Outcome, WorkMessage
from shared.bus.base import describe
from shared.contracts.accounting import CdrCompleted
from shared.contracts.calls import CallEvent

MAX_RETRY_DELAY = 30.0
ACK = Outcome()
REQUEUE = Outcome(requeue=True)


class Announcer:
    """Publishes the completed records of an applied change."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def __call__(self, applied: Applied) -> None:
        """Publish each complete record this change wrote, or re-publish after a redelivery."""
        for stored in completions(applied):
            await self.bus.publish(CdrCompleted(version=stored.version, record=stored.record))
            metrics.COMPLETED.inc()


def completions(applied: Applied) -> list[StoredRecord]:
    """The records of a change to announce: complete, and written by it (or redelivered)."""
    return [
        stored
        for stored in applied.records
        if stored.record.state == "complete" and (stored.changed or applied.duplicate)
    ]


class CallEventHandler:
    """The batch handler of ``{ns}.accounting.calls``: one outcome per message."""

    def __init__(
        self,
        apply: Callable[[Sequence[CallEvent]], Awaitable[list[Applied | BaseException]]],
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

    async def __call__(self, messages: Sequence[WorkMessage]) -> list[Outcome]:
        outcomes: list[Outcome] = [ACK] * len(messages)
        waiting: dict[int, CallEvent] = {}
        for n, message in enumerate(messages):
            try:
                waiting[n] = decode(message.body)
            except BadEventError as error:
                metrics.EVENTS.labels("dead").inc()
                self.log.warning("dead-lettered a call event: %s", error)
                outcomes[n] = Outcome(dead_reason=str(error))
        applied = await self._apply(waiting, outcomes)
        now = time.time()
        for n, result in applied.items():
            metrics.EVENTS.labels("duplicate" if result.duplicate else "stored").inc()
            metrics.RECORDS_WRITTEN.inc(sum(stored.changed for stored in result.records))
            if not result.duplicate:
                metrics.LAG.observe(max(0.0, now - waiting[n].at))
        due = [n for n, result in applied.items() if completions(result)]
        announced = await asyncio.gather(
            *(self.announce(applied[n]) for n in due), return_exceptions=True
        )
        for n, failure in zip(due, announced, strict=True):
            if isinstance(failure, BusUnavailable):
                # Committed but not announced: redelivery finds a duplicate and announces it.
                self.log.warning("cannot publish a completed record yet: %s", failure)
                outcomes[n] = REQUEUE
            elif isinstance(failure, BaseException):
                reason = describe(failure)
                self.log.error("cannot publish a completed record: %s", reason)
                outcomes[n] = Outcome(dead_reason=reason)
        return outcomes

    async def _apply(
        self, waiting: dict[int, CallEvent], outcomes: list[Outcome]
    ) -> dict[int, Applied]:
        """Commit the ``waiting`` events, retrying those the database could not take yet.

        An event that can never be stored is dead-lettered in ``outcomes``; the
        ones still waiting when the service stops go back to the queue.
        """
        applied: dict[int, Applied] = {}
        delay = self.retry_delay
        while waiting:
            results = await self.apply(list(waiting.values()))
            retry: dict[int, CallEvent] = {}
            reason = ""
            for (n, event), result in zip(waiting.items(), results, strict=True):
                if isinstance(result, Applied):
                    applied[n] = result
                elif isinstance(result, Exception) and unavailable(result):
                    retry[n], reason = event, describe(result)
                else:
                    dead = describe(result)
                    self.log.error("dead-lettered a call event that cannot be stored: %s", dead)
                    outcomes[n] = Outcome(dead_reason=dead)
            waiting = retry
            if not waiting:
                break
            metrics.STORE_ERRORS.inc()
            self.log.warning(
                "accounting database unavailable, retrying in %.1f s: %s",
                delay,
                reason.splitlines()[0],
            )
            if not self.stopping.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()
            if self.stopping.is_set():
                for n in waiting:
                    outcomes[n] = REQUEUE
                break
            delay = min(delay * 2, MAX_RETRY_DELAY)
        return applied
