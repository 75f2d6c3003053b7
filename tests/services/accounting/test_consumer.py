"""The queue handler: a database that cannot be reached holds the event, never drops it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import pytest
from prometheus_client import REGISTRY

from deploy.labs.ports import free_port
from services.accounting import consumer
from services.accounting.batching import GroupCommit
from services.accounting.closer import TimeoutCloser
from services.accounting.consumer import Announcer, CallEventHandler
from services.accounting.store import Applied, RecordStore, open_engine
from shared.bus import BusUnavailable, Envelope, Outcome, WorkMessage
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.accounting import CdrCompleted, CdrCompletedBatch, CdrTimedOut
from shared.contracts.call_event_json import written_batch_of
from tests.services.accounting.calls import T0, answered_call, started
from tests.services.accounting.support import until


def store_errors() -> float:
    return REGISTRY.get_sample_value("callmesh_accounting_store_errors_total") or 0.0


def closed_port() -> int:
    """Outside the ephemeral range: no socket of this machine takes it while the test runs."""
    return free_port()


async def test_a_database_down_while_stopping_puts_the_event_back() -> None:
    engine = open_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/none")
    store = RecordStore(engine)
    stopping = asyncio.Event()
    announced: list[Applied] = []

    async def announce(changes: Sequence[Applied]) -> None:
        announced.extend(changes)

    committer = GroupCommit(store)
    handler = CallEventHandler(committer.apply, announce, stopping, logging.getLogger("test"), 0.01)
    bus = MemoryBus(MemoryBroker(), "ns", "edge", "e1")
    body = bus.envelope(started()).to_bytes()
    before = store_errors()
    task = asyncio.create_task(handler([WorkMessage(body), WorkMessage(b"not json")]))
    await until(lambda: store_errors() >= before + 3)
    assert not task.done(), "the event waits for the database"
    stopping.set()
    requeued, dead = await task
    assert requeued == Outcome(requeue=True)
    assert dead.dead_reason is not None and "not an event envelope" in dead.dead_reason
    assert announced == []
    await committer.close()
    await store.close()


async def handle_with(
    store: RecordStore, announce: Callable[[Sequence[Applied]], Awaitable[None]]
) -> list[Outcome]:
    """Two answered calls and a lone start, through a handler publishing with ``announce``."""
    bus = MemoryBus(MemoryBroker(), "ns", "edge", "e1")
    events = [*answered_call("a"), *answered_call("b"), started("open")]
    committer = GroupCommit(store)
    handler = CallEventHandler(
        committer.apply, announce, asyncio.Event(), logging.getLogger("test"), 0.01
    )
    outcomes = await handler([WorkMessage(bus.envelope(event).to_bytes()) for event in events])
    await committer.close()
    return list(outcomes)


async def test_completions_are_published_together_before_the_batch_is_settled(
    record_store: RecordStore,
) -> None:
    calls: list[list[str]] = []

    async def announce(changes: Sequence[Applied]) -> None:
        calls.append([stored.record.call_id for a in changes for stored in a.records])

    outcomes = await handle_with(record_store, announce)
    assert calls == [["a", "b"]], "one publish for the batch, only the complete records"
    assert set(outcomes) == {Outcome()}


async def test_a_large_batch_is_stored_and_announced_in_parts(
    record_store: RecordStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer, "PART", 7, raising=False)  # one answered call's events
    calls: list[list[str]] = []

    async def announce(changes: Sequence[Applied]) -> None:
        calls.append([stored.record.call_id for a in changes for stored in a.records])

    outcomes = await handle_with(record_store, announce)
    assert sorted(calls) == [["a"], ["b"]], "each part's completions as soon as it is stored"
    assert set(outcomes) == {Outcome()}


async def test_completions_the_broker_cannot_take_leave_their_messages_on_the_queue(
    record_store: RecordStore,
) -> None:
    async def announce(changes: Sequence[Applied]) -> None:
        raise BusUnavailable("RabbitMQ unreachable")

    outcomes = await handle_with(record_store, announce)
    # Each call's change is reported with its batch's first event: those go back.
    requeued = [n for n, outcome in enumerate(outcomes) if outcome == Outcome(requeue=True)]
    assert requeued == [0, 7]
    assert {outcomes[n] for n in range(15) if n not in requeued} == {Outcome()}


async def test_a_completion_that_can_never_be_published_refuses_its_message_alone(
    record_store: RecordStore,
) -> None:
    published: list[str] = []

    async def announce(changes: Sequence[Applied]) -> None:
        call_ids = [stored.record.call_id for a in changes for stored in a.records]
        if "b" in call_ids:
            raise ValueError("not publishable")
        published.extend(call_ids)

    outcomes = await handle_with(record_store, announce)
    assert published == ["a"]
    assert outcomes[7].dead_reason == "ValueError: not publishable"
    assert {outcomes[n] for n in range(15) if n != 7} == {Outcome()}


async def test_a_batch_message_is_settled_by_its_worst_event(record_store: RecordStore) -> None:
    """An edge's ``edge.call.batch``: acknowledged once all its events are committed and
    announced; put back when the broker cannot take completions yet (all of them, as for
    single events); dead-lettered when one of its completions can never be published (the
    other message settled on its own)."""
    bus = MemoryBus(MemoryBroker(), "ns", "edge", "e1")
    published: list[str] = []
    failure: Exception | None = None

    async def announce(changes: Sequence[Applied]) -> None:
        call_ids = [stored.record.call_id for a in changes for stored in a.records]
        if failure is not None and any(call.startswith("b") for call in call_ids):
            raise failure
        published.extend(call_ids)

    async def handle(suffix: str) -> list[Outcome]:
        calls = [answered_call(f"a{suffix}"), [*answered_call(f"b{suffix}"), started("open")]]
        messages = [WorkMessage(bus.envelope(written_batch_of(c)).to_bytes()) for c in calls]
        committer = GroupCommit(record_store)
        handler = CallEventHandler(
            committer.apply, announce, asyncio.Event(), logging.getLogger("test"), 0.01
        )
        try:
            return list(await handler(messages))
        finally:
            await committer.close()

    assert await handle("1") == [Outcome(), Outcome()]
    assert published == ["a1", "b1"]
    failure = BusUnavailable("RabbitMQ unreachable")
    assert await handle("2") == [Outcome(requeue=True), Outcome(requeue=True)]
    failure = ValueError("not publishable")
    assert await handle("3") == [Outcome(), Outcome(dead_reason="ValueError: not publishable")]


async def test_a_timeout_close_is_also_published_as_timed_out(record_store: RecordStore) -> None:
    """``accounting.cdr.timed_out`` is what the edges' ``edge.media.expired`` queue binds to:
    the completion of a call closed as timeout, and of no other."""
    broker = MemoryBroker()
    bus, tap = (MemoryBus(broker, "ns", name, "1") for name in ("accounting", "billing"))
    for each in (bus, tap):
        await each.start()
    heard: list[tuple[str, str]] = []

    async def hear(envelope: Envelope) -> None:
        heard.append((envelope.type, envelope.payload(CdrCompleted).record.call_id))

    await tap.subscribe([CdrCompleted.routing_key, CdrTimedOut.routing_key], hear)
    *talking, _bye = answered_call()
    for event in [*talking, *answered_call("ended")]:
        await record_store.apply(event)
    log = logging.getLogger("test")
    closer = TimeoutCloser(record_store, Announcer(bus), 3600, log, lambda: T0 + 30 + 3600.5)
    assert await closer.round() == 1
    await Announcer(bus)([await record_store.apply(answered_call("ended")[-1])])  # redelivered BYE
    await until(lambda: len(heard) >= 3)
    assert sorted(heard) == [
        ("accounting.cdr.completed", "c1"),
        ("accounting.cdr.completed", "ended"),
        ("accounting.cdr.timed_out", "c1"),
    ]
    for each in (bus, tap):
        await each.close()


async def test_completions_go_out_in_batches_when_asked_a_lone_one_and_timeouts_alone(
    record_store: RecordStore,
) -> None:
    """``CALLMESH_ACCOUNTING_COMPLETED_BATCH``: the records of one commit in messages of up to
    that many; one completion alone stays a plain ``accounting.cdr.completed``."""
    broker = MemoryBroker()
    bus, tap = (MemoryBus(broker, "ns", name, "1") for name in ("accounting", "billing"))
    for each in (bus, tap):
        await each.start()
    heard: list[tuple[str, list[str]]] = []

    async def hear(envelope: Envelope) -> None:
        if envelope.type == CdrCompletedBatch.routing_key:
            batch = envelope.payload(CdrCompletedBatch).completed
            heard.append((envelope.type, [each.record.call_id for each in batch]))
        else:
            heard.append((envelope.type, [envelope.payload(CdrCompleted).record.call_id]))

    await tap.subscribe(["accounting.cdr.#"], hear)
    ended = [f"e{n}" for n in range(5)]
    calls = [event for call_id in ended for event in answered_call(call_id)]
    announce = Announcer(bus, batch=2)
    await announce(await record_store.apply_many(calls))
    await announce(await record_store.apply_many(answered_call("alone")))
    *talking, _bye = answered_call("silent")
    await record_store.apply_many(talking)
    log = logging.getLogger("test")
    closer = TimeoutCloser(record_store, announce, 3600, log, lambda: T0 + 1e5)
    assert await closer.round() == 1
    await until(lambda: len(heard) >= 6)
    assert heard == [
        ("accounting.cdr.completed.batch", ["e0", "e1"]),
        ("accounting.cdr.completed.batch", ["e2", "e3"]),
        ("accounting.cdr.completed.batch", ["e4"]),
        ("accounting.cdr.completed", ["alone"]),
        ("accounting.cdr.completed", ["silent"]),
        ("accounting.cdr.timed_out", ["silent"]),
    ]
    for each in (bus, tap):
        await each.close()
