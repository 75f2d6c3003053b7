"""The edge's events to the bus, off the call path: a bounded backlog drained by a few senders.

Why not a task per event under a cap: each publish waits for the broker's
confirm, so when the broker is slow for a moment (a disk flush, a queue
catching up) hundreds of publishes are in flight at once, and a cap on tasks
dropped call events, hence call records, as soon as it was reached.  Here
the events wait in a deque instead (about 1.3 KB each, traced), up to
`MAX_BACKLOG`, and `SENDERS` tasks publish them concurrently (the confirms of
one channel are pipelined).  A publish the bus could not make because the
broker is away is retried by its sender, the event kept, so a broker outage
shorter than the backlog loses nothing.  Past the bound the newest event is
dropped: memory stays bounded, and every drop is counted in
``callmesh_edge_events_dropped_total{reason}`` and logged (the first one,
then at most once per `LOG_INTERVAL`).

Call events that wait together go out together: a sender takes up to
``batch`` consecutive call events from the backlog as one ``edge.call.batch``
message (read as a `shared.contracts.calls.CallEventBatch`, sent as a
`WrittenCallEventBatch`): each event's JSON is written once, as it is offered, and
reused by the journal's line and the batch (`shared.contracts.call_event_json`). With
few senders when batching (`BATCHING_SENDERS`), the backlog that forms while they wait
for the broker's confirms becomes the next batches. Why a ``linger`` as well: a quiet broker
confirms in well under a millisecond, so at 1,000 calls a second four senders
kept up with the events one by one, and publishing them (a pydantic dump, an
AMQP frame, a write and a confirm each) took a fifth of the edge's CPU (py-spy,
`bench.proxy.run`). A sender that finds fewer than ``batch`` call events
waiting waits up to ``linger`` seconds for more, one sender at a time: the
others leave short batches to it, and the offer that makes a whole batch, or
brings another kind of event (a failure report, a protection state), wakes it.
So the messages fall from one per event to a few per ``linger``; an event is
late by at most that, and its times are its own (stamped as the call went), so
no record changes. ``linger`` 0: an event never waits for a batch, only for a
sender.

With an outbox journal (`services.edge.runtime.journal`, on by default), every
call event taken into the backlog is also appended to the worker's journal,
and settled there once the broker confirmed the message that carried it (or
it was given up: a publish that failed for good).  So the call events a
worker dies with, waiting or in flight, are published by the next worker to
start on its directory (`recover`, before it takes any call), and the ones
left at a graceful stop too.  Other events (failure reports, protection
state) are not journaled: the next report or resync replaces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from services.edge import metrics
from services.edge.runtime.journal import Journal
from shared.bus import Bus, BusUnavailable
from shared.contracts.call_event_json import is_call_event, written, written_batch
from shared.contracts.calls import MAX_BATCH_EVENTS, CallEvent, WrittenCallEventBatch
from shared.contracts.event import Event

log = logging.getLogger("callmesh.edge")

MAX_BACKLOG = 20_000
"""Events waiting at most: some 40 s of a 100 calls/s edge's events, under 40 MB."""
SENDERS = 64
"""Publishes in flight at once: enough to keep up with the broker's confirm latency."""
BATCHING_SENDERS = 4
"""Publishes in flight at once when call events are batched: fewer, so that a backlog
(the next batches) forms under load instead of 64 single-event messages in flight."""
RETRY_DELAY = 0.5
"""Seconds before a sender retries an event the bus could not publish (broker away)."""
LOG_INTERVAL = 10.0
DRAIN_TIMEOUT = 2.0
"""On a graceful stop, how long the backlog may still go out before the rest is dropped."""


class EventPublisher:
    """Publishes each event `offer`ed, in the background, unless the backlog is full."""

    def __init__(
        self,
        bus: Bus,
        max_backlog: int = MAX_BACKLOG,
        senders: int | None = None,
        batch: int = 1,
        *,
        linger: float = 0.0,
        journal: Journal | None = None,
        fsync_interval: float = 0.0,
    ) -> None:
        self._bus = bus
        self._max_backlog = max_backlog
        self._batch = batch
        """Call events per message at most (1: each on its own routing key)."""
        self._linger = linger if batch > 1 else 0.0
        self._lingering = False
        """A sender waits for a batch to fill: the others leave short batches to it, and an
        offer wakes it (`_fill`) instead of starting a sender once a whole batch, or an
        event of another kind, waits."""
        self._fill = asyncio.Event()
        if senders is None:
            senders = BATCHING_SENDERS if batch > 1 else SENDERS
        self._max_senders = senders
        self._journal = journal
        self._fsync_interval = fsync_interval
        self._syncing: asyncio.Task[None] | None = None
        self._backlog: deque[tuple[Event, int, bytes]] = deque()
        """Each event with its journal sequence number (0: not journaled) and, a call event,
        its fields as JSON (`written`; empty for other events: so the batching tells a call
        event by its bytes, not by an ``isinstance`` of a pydantic model, `is_call_event`)."""
        self._senders: set[asyncio.Task[None]] = set()
        self._dropped = 0
        self._logged_at = -LOG_INTERVAL
        self._logged_dropped = 0
        self.observer: Callable[[Event], None] | None = None
        """Also shown each event offered (HEP log packets of call events, `runtime.capture`)."""

    @property
    def waiting(self) -> int:
        """Events not handed to the bus yet (those being published excluded)."""
        return len(self._backlog)

    @property
    def max_backlog(self) -> int:
        """Events that may wait at most: past it the newest is dropped (the load shedder
        refuses new calls well before, `policy.overload`)."""
        return self._max_backlog

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def unsettled(self) -> int:
        """Call events journaled and not yet confirmed by the broker (0 without a journal)."""
        return 0 if self._journal is None else self._journal.unsettled

    def offer(self, event: Event) -> None:
        """Queue `event` for publishing; never blocks, never raises.

        A call event is written as JSON here, once (`written`: the event itself, or one
        whose text no JSON could hold mended), for its journal line and its batch.
        """
        data = b""
        if is_call_event(event):
            try:
                event, data = written(event)
            except Exception:  # no JSON, even mended: never the call path's trouble
                self._drop(event, "failed")
                return
        if self.observer is not None:
            self.observer(event)
        if len(self._backlog) >= self._max_backlog:
            self._drop(event, "backlog_full")
            return
        seq = 0
        if self._journal is not None and data:
            seq = self._journal.append(cast(CallEvent, event), data) or 0
        self._backlog.append((event, seq, data))
        if self._lingering:
            if len(self._backlog) >= self._batch or not data:  # or another kind of event
                self._fill.set()
        elif len(self._senders) < self._max_senders:
            self._start_sender()

    def recover(self) -> int:
        """Publish first the call events a predecessor journaled and never saw confirmed.

        Called once at start, before any call; they go into the backlog whatever its
        bound (the journal's bounds them).  Returns how many.
        """
        journal = self._journal
        if journal is None:
            return 0
        pending = journal.recover()
        metrics.OUTBOX_REPLAYED.value += len(pending)
        self._backlog.extendleft(
            (event, seq, written(event)[1]) for seq, event in reversed(pending)
        )
        while self._backlog and len(self._senders) < min(self._max_senders, len(self._backlog)):
            self._start_sender()
        if self._fsync_interval > 0:
            self._syncing = asyncio.get_running_loop().create_task(self._sync(journal))
            journal.syncing = True
        return len(pending)

    def _start_sender(self) -> None:
        task = asyncio.get_running_loop().create_task(self._send())
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _sync(self, journal: Journal) -> None:
        """Flush the journal to the disk every `fsync_interval` seconds, off the loop."""
        while True:
            await asyncio.sleep(self._fsync_interval)
            await asyncio.to_thread(journal.sync)

    async def stop(self, drain: float = DRAIN_TIMEOUT) -> None:
        """Give the backlog `drain` seconds to go out, then drop what is left.

        What is dropped here stays journaled: the next start publishes it.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain):
                while self._senders:
                    await asyncio.wait(set(self._senders))
        senders = list(self._senders)
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        for event, _, _ in self._backlog:
            self._drop(event, "stopped")
        self._backlog.clear()
        if self._syncing is not None:
            self._syncing.cancel()
            await asyncio.gather(self._syncing, return_exceptions=True)
        if self._journal is not None:
            self._journal.sync()
            self._journal.close()
            self._journal = None

    async def _send(self) -> None:
        """Publish from the backlog until it is empty.

        A sender leaves the set of senders as it finds the backlog empty, not later in
        a done callback: an event offered in between would otherwise see every sender
        still counted, start none, and wait for the next offer.
        """
        try:
            while self._backlog:
                if self._short_batch():
                    if self._lingering:
                        break  # the sender lingering takes them
                    await self._wait_for_batch()
                    if not self._backlog:
                        break  # another sender took them
                event, seqs = self._take()
                try:
                    await self._publish(event, seqs)
                except asyncio.CancelledError:
                    self._drop(event, "stopped")  # still journaled: the next start publishes it
                    raise
        finally:
            self._senders.discard(cast("asyncio.Task[None]", asyncio.current_task()))

    async def _wait_for_batch(self) -> None:
        """Linger until a whole batch (or another kind of event) waits, `linger` at most."""
        self._lingering = True
        self._fill.clear()
        try:
            async with asyncio.timeout(self._linger):
                await self._fill.wait()
        except TimeoutError:
            pass
        finally:
            self._lingering = False

    def _short_batch(self) -> bool:
        """Whether this sender should linger: call events wait at the head, fewer than a
        batch, and lingering is on."""
        backlog = self._backlog
        return self._linger > 0 and len(backlog) < self._batch and bool(backlog[0][2])

    def _take(self) -> tuple[Event, list[int]]:
        """The next event of the backlog, or the call events waiting at its head as a batch;
        with the journal's numbers of those it holds.

        A batch holds up to ``batch`` events, or as many as a message may
        (`MAX_BATCH_EVENTS`) while more than a batch per sender waits: a publish costs a
        handful of the loop's turns whatever its size, and a busy edge's loop turns every
        20 ms or so, so its senders kept up only with fewer, larger messages."""
        first, seq, data = self._backlog.popleft()
        seqs = [seq] if seq else []
        backlog = self._backlog
        if self._batch < 2 or not data or not backlog:
            return first, seqs
        limit = self._batch
        if len(backlog) >= limit * self._max_senders:
            limit = max(limit, MAX_BATCH_EVENTS)  # behind: fewer, larger messages
        kinds: list[type[CallEvent]] = [cast(type[CallEvent], type(first))]
        fields = [data]
        while backlog and len(fields) < limit and backlog[0][2]:
            event, seq, data = backlog.popleft()
            kinds.append(cast(type[CallEvent], type(event)))
            fields.append(data)
            if seq:
                seqs.append(seq)
        return (first if len(fields) == 1 else written_batch(kinds, fields)), seqs

    async def _publish(self, event: Event, seqs: list[int]) -> None:
        """Publish `event`, waiting for a broker that is away as long as it takes; then
        settle its journaled events.

        The wait before a retry is out of the `except` block: compiled (mypyc), a coroutine
        suspended inside one left its exception as the one being handled for everything
        else the loop ran meanwhile (`sys.exc_info()`, the `__context__` of any exception
        raised), for as long as the broker was away."""
        while True:
            try:
                await self._bus.publish(event)
                self._settle(seqs)
                return
            except BusUnavailable as error:
                log.debug("could not publish %s yet: %s", event.routing_key, error)
            except Exception as error:  # the bus's trouble must not reach the call path
                log.warning("could not publish %s: %s", event.routing_key, error)
                self._drop(event, "failed")
                self._settle(seqs)
                return
            await asyncio.sleep(RETRY_DELAY)

    def _settle(self, seqs: list[int]) -> None:
        if seqs and self._journal is not None:
            self._journal.settle(seqs)

    def _drop(self, event: Event, reason: str) -> None:
        count = event.count if isinstance(event, WrittenCallEventBatch) else 1
        self._dropped += count
        metrics.EVENTS_DROPPED[reason] += count
        now = time.monotonic()
        if now - self._logged_at >= LOG_INTERVAL:
            log.warning(
                "event %s dropped (%s): %d events dropped so far, %d since the last report,"
                " %d waiting",
                event.routing_key,
                reason,
                self._dropped,
                self._dropped - self._logged_dropped,
                len(self._backlog),
            )
            self._logged_at = now
            self._logged_dropped = self._dropped
