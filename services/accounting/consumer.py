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
from shared.contracts.accounting import CdrCompleted, CdrCompletedBatch, CdrTimedOut
from shared.contracts.calls import CallEvent
from shared.contracts.event import Event

MAX_RETRY_DELAY = 30.0
PART = 1024
"""Events of a batch stored (and their completions announced) together: a transaction's worth
(the group commit's ``MAX_BATCH``)."""
ACK = Outcome()
REQUEUE = Outcome(requeue=True)


class Announcer:
    """Publishes the completed records of applied changes, all confirmed at once.

    With ``batch`` above 1, the completions announced together go out in
    ``accounting.cdr.completed.batch`` messages of up to that many (a lone one
    still as ``accounting.cdr.completed``): a message costs more to publish than
    the record it carries.
    """

    def __init__(self, bus: Bus, batch: int = 1) -> None:
        self.bus = bus
        self.batch = batch

    async def __call__(self, changes: Sequence[Applied]) -> None:
        """Publish each complete record these changes wrote, or re-publish after a redelivery.

        A record completed as ``timeout`` is also published as ``accounting.cdr.timed_out``.

        Returns once the broker has confirmed every one (one wait for the lot).
        """
        completed: list[CdrCompleted] = []
        timed_out: list[Event] = []
        for applied in changes:
            for stored in completions(applied):
                completed.append(CdrCompleted(version=stored.version, record=stored.record))
                if stored.record.disposition == "timeout":
                    timed_out.append(CdrTimedOut(version=stored.version, record=stored.record))
        announced: list[Event] = []
        if self.batch == 1 or len(completed) == 1:
            announced += completed
        else:
            for at in range(0, len(completed), self.batch):
                announced.append(
                    CdrCompletedBatch.model_construct(completed=completed[at : at + self.batch])
                )
        await self.bus.publish_many(announced + timed_out)
        metrics.COMPLETED.inc(len(completed))


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
        announce: Callable[[Sequence[Applied]], Awaitable[None]],
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
        """Each message's outcome: its events' (a batch's), requeue first, then dead-letter.

        A large batch goes on in parts of about ``PART`` events, each stored and
        announced as soon as it is decoded: while the database commits one part,
        this process decodes the next or publishes the completions of the one
        before (one after the other, it waited for each in turn).  The batch is
        acknowledged once every part is done.
        """
        received: list[Outcome] = [ACK] * len(messages)
        owners: list[int] = []
        """Which message each event came in (a batch brings several)."""
        outcomes: list[Outcome] = []
        waiting: dict[int, CallEvent] = {}
        async with asyncio.TaskGroup() as parts:
            for n, message in enumerate(messages):
                try:
                    events = decode(message.body)
                except BadEventError as error:
                    metrics.EVENTS.labels("dead").inc()
                    self.log.warning("dead-lettered a call event: %s", error)
                    received[n] = Outcome(dead_reason=str(error))
                    continue
                for event in events:
                    waiting[len(owners)] = event
                    owners.append(n)
                    outcomes.append(ACK)
                if len(waiting) >= PART:
                    parts.create_task(self._store(waiting, outcomes))
                    waiting = {}
                    await asyncio.sleep(0)  # the part goes to the database meanwhile
            if waiting:
                parts.create_task(self._store(waiting, outcomes))
        for n, outcome in zip(owners, outcomes, strict=True):
            if outcome is REQUEUE or (outcome is not ACK and received[n] is ACK):
                received[n] = outcome
        return received

    async def _store(self, waiting: dict[int, CallEvent], outcomes: list[Outcome]) -> None:
        """Commit the events, then announce the records they completed; ``outcomes`` per event."""
        applied = await self._apply(waiting, outcomes)
        now, duplicates, written = time.time(), 0, 0
        for n, result in applied.items():
            duplicates += result.duplicate
            written += sum(stored.changed for stored in result.records)
            if not result.duplicate:
                metrics.LAG.observe(max(0.0, now - waiting[n].at))
        metrics.EVENTS.labels("duplicate").inc(duplicates)
        metrics.EVENTS.labels("stored").inc(len(applied) - duplicates)
        metrics.RECORDS_WRITTEN.inc(written)
        due = [n for n, result in applied.items() if completions(result)]
        if due:
            await self._announce(applied, due, outcomes)

    async def _announce(
        self, applied: dict[int, Applied], due: list[int], outcomes: list[Outcome]
    ) -> None:
        """Publish the completions of the messages ``due``; settle those it could not.

        The messages are acknowledged only after this returns, so a crash before
        the broker's confirm redelivers them: duplicates by then, announced again.
        """
        try:
            await self.announce([applied[n] for n in due])
        except BusUnavailable as failure:
            # Committed but not announced: redelivery finds a duplicate and announces it.
            self.log.warning("cannot publish completed records yet: %s", failure)
            for n in due:
                outcomes[n] = REQUEUE
        except Exception as failure:
            if len(due) > 1:  # one at a time, so only what cannot be published is refused
                for n in due:
                    await self._announce(applied, [n], outcomes)
                return
            reason = describe(failure)
            self.log.error("cannot publish a completed record: %s", reason)
            outcomes[due[0]] = Outcome(dead_reason=reason)

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
