"""The edge's event publisher: a slow broker delays events without losing them, memory stays
bounded, and whatever is dropped is counted and logged."""

from __future__ import annotations

import asyncio
import logging
import sys

import pytest
from prometheus_client import REGISTRY

from services.edge.proxy.call_events import CallEvents, CallNotes
from services.edge.runtime import publisher as module
from services.edge.runtime.publisher import EventPublisher
from shared.bus import BusUnavailable
from shared.bus.base import Envelope
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.calls import (
    CALL_EVENT_TYPES,
    MAX_BATCH_EVENTS,
    CallCancelled,
    CallEventBatch,
    WrittenCallEventBatch,
)
from shared.contracts.edge import LimitReached
from shared.contracts.event import Event
from tests.shared.bus.support import until

ENVELOPES = MemoryBus(MemoryBroker(), "test", "edge", "edge-a")


def events(count: int) -> list[Event]:
    made = CallEvents("edge-a")
    return [made.cancelled(CallNotes(f"call-{n}", "a1"), 0.0).event for n in range(count)]


def dropped(reason: str) -> float:
    value = REGISTRY.get_sample_value("callmesh_edge_events_dropped_total", {"reason": reason})
    return value or 0.0


class Broker(MemoryBus):
    """A broker whose confirms take `delay` s, that is away for its first `away` publishes,
    fails for good on `bad` events, or does not answer at all until `release`."""

    def __init__(self, delay: float = 0.0, away: int = 0, silent: bool = False) -> None:
        super().__init__(MemoryBroker(), "test", "edge", "edge-a")
        self.delay = delay
        self.away = away
        self.bad: set[str] = set()
        self.release = asyncio.Event()
        if not silent:
            self.release.set()
        self.published: list[Event] = []

    async def publish(self, event: Event, routing_key: str | None = None) -> Envelope:
        await self.release.wait()
        if self.away > 0:
            self.away -= 1
            raise BusUnavailable("RabbitMQ failed: connection refused")
        if getattr(event, "call_id", "") in self.bad:
            raise ValueError("not serialisable")
        await asyncio.sleep(self.delay)
        self.published.append(event)
        return self.envelope(event, routing_key)


async def test_a_broker_slow_to_confirm_loses_no_event() -> None:
    """Far more events in flight than senders (the old cap of 256 tasks dropped most)."""
    broker = Broker(delay=0.05)
    publisher = EventPublisher(broker)
    before = dropped("backlog_full")
    sent = events(2000)
    for event in sent:
        publisher.offer(event)
    await until(lambda: len(broker.published) == len(sent))
    assert sorted(e.call_id for e in broker.published) == sorted(e.call_id for e in sent)  # type: ignore[attr-defined]
    assert publisher.dropped == 0 and dropped("backlog_full") == before
    await publisher.stop()


async def test_past_the_bound_events_are_dropped_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Broker(silent=True)
    publisher = EventPublisher(broker, max_backlog=50, senders=4)
    before = dropped("backlog_full")
    with caplog.at_level(logging.WARNING, "callmesh.edge"):
        for event in events(130):
            publisher.offer(event)
    assert publisher.dropped == 80  # the backlog held 50; memory does not grow past it
    assert dropped("backlog_full") - before == 80
    [line] = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert "(backlog_full)" in line and "1 events dropped so far" in line  # once, not per drop
    broker.release.set()
    await until(lambda: len(broker.published) == 50)
    publisher.offer(events(1)[0])  # once drained, publishing goes on
    await until(lambda: len(broker.published) == 51)
    await publisher.stop()


async def test_a_broker_away_for_a_while_gets_every_event_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(module, "RETRY_DELAY", 0.01)
    broker = Broker(away=30)
    publisher = EventPublisher(broker, senders=4)
    for event in events(10):
        publisher.offer(event)
    await until(lambda: len(broker.published) == 10)
    assert broker.away == 0 and publisher.dropped == 0
    await publisher.stop()


async def test_a_sender_waiting_to_retry_leaves_no_exception_handled_meanwhile() -> None:
    """The rest of the loop runs while a sender waits for the broker: no exception of the
    sender's may be the one being handled there (as a mypyc coroutine suspended in an
    `except` block left it: every exception raised meanwhile carried it as its context)."""
    broker = Broker(away=1)
    publisher = EventPublisher(broker)
    publisher.offer(events(1)[0])
    await until(lambda: broker.away == 0)  # refused once: the sender waits to retry
    assert sys.exc_info() == (None, None, None)
    await until(lambda: len(broker.published) == 1)
    await publisher.stop()


async def test_an_event_the_bus_cannot_publish_is_dropped_alone() -> None:
    broker = Broker()
    broker.bad.add("call-1")
    publisher = EventPublisher(broker)
    before = dropped("failed")
    for event in events(3):
        publisher.offer(event)
    await until(lambda: len(broker.published) == 2)
    assert dropped("failed") - before == 1
    await publisher.stop()


async def test_an_event_no_json_holds_goes_out_mended_an_unwritable_one_is_dropped() -> None:
    """Offered from the call path, neither raises: a lone surrogate (a Request-URI's ``%FF``
    unescaped) goes out as ``%FF``, to the observer too; a field of no JSON type at all is
    dropped and counted, the events around it published."""
    broker = Broker()
    publisher = EventPublisher(broker, batch=8, linger=0.05)
    observed: list[Event] = []
    publisher.observer = observed.append
    before = dropped("failed")
    [first, second, third] = events(3)
    odd = first.model_copy(update={"call_id": "call-\udcff"})
    unwritable = CallCancelled.model_construct(**{**second.__dict__, "from_tag": object()})
    for event in (odd, unwritable, third):
        publisher.offer(event)
    await until(lambda: sum(len(unbatched(e)) for e in broker.published) == 2)
    assert [e.call_id for p in broker.published for e in unbatched(p)] == ["call-%FF", "call-2"]  # type: ignore[attr-defined]
    assert [e.call_id for e in observed] == ["call-%FF", "call-2"]  # type: ignore[attr-defined]
    assert dropped("failed") - before == 1
    await publisher.stop()


async def test_a_stop_lets_the_backlog_out_first() -> None:
    broker = Broker(delay=0.01)
    publisher = EventPublisher(broker, senders=2)
    for event in events(20):
        publisher.offer(event)
    await publisher.stop()
    assert len(broker.published) == 20


async def test_a_stop_with_the_broker_silent_drops_and_counts_the_rest() -> None:
    publisher = EventPublisher(Broker(silent=True), senders=2)
    before = dropped("stopped")
    for event in events(5):
        publisher.offer(event)
    await publisher.stop(drain=0.1)
    assert dropped("stopped") - before == 5  # the two in hand and the three waiting
    assert publisher.waiting == 0


async def test_call_events_waiting_together_go_as_batches_in_order_none_lost() -> None:
    """Under a slow broker the backlog becomes batches of at most `batch` call events, in the
    order offered; another kind of event is never folded in (it keeps its routing key)."""
    broker = Broker(delay=0.02)
    publisher = EventPublisher(broker, batch=8, senders=16)  # never a batch per sender behind
    sent = events(100)
    marker = LimitReached(entity="peer:x", kind="cps", limit=1, refused=1, period=1.0, edge="e")
    for n, event in enumerate(sent):
        publisher.offer(event)
        if n == 50:
            publisher.offer(marker)
    await until(lambda: sum(len(unbatched(e)) for e in broker.published) == len(sent) + 1)
    batches = [e for e in broker.published if isinstance(e, WrittenCallEventBatch)]
    assert batches and all(2 <= batch.count <= 8 for batch in batches)
    assert marker in broker.published
    flat = [event for published in broker.published for event in unbatched(published)]
    assert [e for e in flat if e is not marker] == sent
    await publisher.stop()


async def test_a_publisher_behind_sends_messages_as_large_as_a_batch_may_be() -> None:
    """More than a batch per sender waiting, a sender takes up to `MAX_BATCH_EVENTS`: a
    publish costs some turns of the loop whatever its size.  Caught up, batches are
    `batch` at most again; the order is kept, nothing is lost."""
    broker = Broker(delay=0.02)
    publisher = EventPublisher(broker, batch=8, senders=2)
    sent = events(2 * MAX_BATCH_EVENTS + 500)
    for event in sent:
        publisher.offer(event)
    await until(lambda: sum(len(unbatched(e)) for e in broker.published) == len(sent))
    counts = [len(unbatched(e)) for e in broker.published]
    assert counts[:2] == [MAX_BATCH_EVENTS, MAX_BATCH_EVENTS]  # two senders, far behind
    assert counts[2] == 500  # still more than 8 a sender: the rest at once
    flat = [event for published in broker.published for event in unbatched(published)]
    assert flat == sent
    for event in events(12):
        publisher.offer(event)  # fewer than 8 a sender: batches of 8 at most again
    await until(lambda: sum(len(unbatched(e)) for e in broker.published) == len(sent) + 12)
    assert max(len(unbatched(e)) for e in broker.published[3:]) <= 8
    await publisher.stop()


async def test_without_batching_or_at_a_trickle_every_event_goes_alone() -> None:
    broker = Broker(delay=0.02)
    publisher = EventPublisher(broker, batch=1)
    for event in events(40):
        publisher.offer(event)
    await until(lambda: len(broker.published) == 40)
    assert not any(isinstance(e, WrittenCallEventBatch) for e in broker.published)
    await publisher.stop()
    broker = Broker()
    trickle = EventPublisher(broker, batch=8)
    for event in events(5):
        trickle.offer(event)
        await until(lambda: not trickle.waiting)
    await until(lambda: len(broker.published) == 5)
    assert not any(isinstance(e, WrittenCallEventBatch) for e in broker.published)
    await trickle.stop()


async def test_with_a_linger_a_quick_broker_gets_the_call_events_of_a_trickle_as_batches() -> None:
    """A broker that confirms at once kept every sender free, so each event went alone; with
    a linger the events offered one by one within it go as one batch, in order, none lost,
    and one sender lingers at a time (the others start for a whole batch only)."""
    broker = Broker()
    publisher = EventPublisher(broker, batch=16, linger=0.5)
    sent = events(40)
    for event in sent:
        publisher.offer(event)
        await asyncio.sleep(0)  # one loop turn each: all within the linger
    assert len(publisher._senders) <= 3  # one lingering, those started for whole batches
    await until(lambda: sum(len(unbatched(e)) for e in broker.published) == len(sent))
    assert len(broker.published) <= 4  # two whole batches and the lingered rest (or two)
    assert all(isinstance(e, WrittenCallEventBatch) for e in broker.published)
    flat = [event for published in broker.published for event in unbatched(published)]
    assert flat == sent
    await publisher.stop()


async def test_a_whole_batch_wakes_the_one_lingering_and_others_leave_short_ones_to_it() -> None:
    """Events every 10 ms, a batch of 4, a linger of 50 ms: the lingering sender is woken as
    the fourth comes, and a sender back from a publish leaves the next short batch to the
    one lingering then; lingering senders side by side woke with one event each."""
    broker = Broker(delay=0.003)
    publisher = EventPublisher(broker, batch=4, linger=0.05)
    sent = events(21)
    for event in sent:
        publisher.offer(event)
        await asyncio.sleep(0.01)
    await until(lambda: sum(len(unbatched(e)) for e in broker.published) == len(sent))
    sizes = [len(unbatched(e)) for e in broker.published]
    assert sizes.count(1) <= 1, sizes  # the 21st may go alone
    flat = [event for published in broker.published for event in unbatched(published)]
    assert flat == sent
    await publisher.stop()


async def test_a_lingered_event_is_late_by_the_linger_at_most_another_alone_is_not() -> None:
    broker = Broker()
    publisher = EventPublisher(broker, batch=16, linger=1.0)  # long: a loaded machine's lag
    loop = asyncio.get_running_loop()
    started = loop.time()
    publisher.offer(events(1)[0])
    await until(lambda: len(broker.published) == 1)
    assert 0.99 <= loop.time() - started < 3.0
    assert not isinstance(broker.published[0], WrittenCallEventBatch)  # one event: its own key
    marker = LimitReached(entity="peer:x", kind="cps", limit=1, refused=1, period=1.0, edge="e")
    started = loop.time()
    publisher.offer(marker)
    await until(lambda: marker in broker.published)
    assert loop.time() - started < 0.8  # not a call event: no batch to wait for
    publisher.offer(events(1)[0])
    await asyncio.sleep(0.01)  # a sender lingers for it
    started = loop.time()
    publisher.offer(marker)
    await until(lambda: broker.published.count(marker) == 2)
    assert loop.time() - started < 0.8  # it wakes the one lingering: the two go at once
    await publisher.stop()


def unbatched(event: Event) -> list[Event]:
    """The events a published message carries (a batch's, read as a receiver reads them)."""
    if not isinstance(event, WrittenCallEventBatch):
        return [event]
    body = Envelope.from_bytes(ENVELOPES.envelope(event).to_bytes())
    items = body.payload(CallEventBatch).events
    assert len(items) == event.count
    return [CALL_EVENT_TYPES[item.type].model_validate(item.data) for item in items]


async def test_an_event_offered_as_the_last_senders_finish_still_goes_out() -> None:
    """A bus that publishes without yielding (the in-process one) empties the backlog within
    a sender's run: the events offered before the loop forgets the finished senders must
    start one of their own, not wait for the next offer."""
    bus = MemoryBus(MemoryBroker(), "test", "edge", "edge-a")
    await bus.start()
    publisher = EventPublisher(bus, batch=8)
    for _ in range(10):
        for event in events(64):
            publisher.offer(event)
        await asyncio.sleep(0)
    await until(lambda: publisher.waiting == 0)
    await publisher.stop()
    assert publisher.dropped == 0
