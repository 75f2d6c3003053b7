"""The bus contract, run against both implementations (``make_bus`` is parametrised).

Negative assertions ("this never arrives") publish a last event that does arrive:
a queue keeps the order of one publisher, so once the last one is in, anything
still missing was never routed.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.bus import (
    REASON_HEADER,
    BusUnavailable,
    DeadLetter,
    Envelope,
    Requeue,
    WorkMessage,
)
from tests.shared.bus.support import Inbox, MakeBus, Ping, until


async def test_publish_wraps_events_in_a_gapless_envelope(make_bus: MakeBus) -> None:
    subscriber = await make_bus("listener")
    publisher = await make_bus("pinger", "host-7")
    inbox = Inbox()
    await subscriber.subscribe(["test.#"], inbox)
    before = time.time()

    sent = [await publisher.publish(Ping(n=n)) for n in range(3)]

    await until(lambda: len(inbox.items) == 3)
    received: list[Envelope] = inbox.items
    assert received == sent
    assert [envelope.seq for envelope in received] == [1, 2, 3]
    assert [envelope.payload(Ping).n for envelope in received] == [0, 1, 2]
    first = received[0]
    assert (first.type, first.schema_version) == ("test.ping", 1)
    assert (first.service, first.instance, first.stream) == ("pinger", "host-7", "pinger/host-7")
    assert before <= first.ts <= time.time()


async def test_publish_many_sends_each_event_in_order_once_taken(make_bus: MakeBus) -> None:
    subscriber = await make_bus("listener")
    publisher = await make_bus("pinger")
    inbox = Inbox()
    await subscriber.subscribe(["test.#"], inbox)
    assert await publisher.publish_many([]) == []
    await publisher.publish(Ping(n=-1))

    sent = await publisher.publish_many([Ping(n=n) for n in range(200)])

    await until(lambda: len(inbox.items) == 201)
    assert inbox.items[1:] == sent
    assert [envelope.seq for envelope in sent] == list(range(2, 202))
    assert [envelope.payload(Ping).n for envelope in sent] == list(range(200))


async def test_topic_patterns_route_like_rabbitmq(make_bus: MakeBus) -> None:
    bus = await make_bus()
    inbox = Inbox()
    await bus.subscribe(["a.*.c", "#.c", "x.#"], inbox)

    for key in ["a.b.c", "a.b", "a.b.b.c", "x", "b.x", "x.y.z", "xx.y", "c"]:
        await bus.publish(Ping(n=0), routing_key=key)
    await bus.publish(Ping(n=0), routing_key="x.last")

    await until(lambda: len(inbox.items) >= 1 and inbox.items[-1].type == "x.last")
    # "a.b.c" matches two patterns and still arrives once.
    assert [envelope.type for envelope in inbox.items] == [
        "a.b.c",
        "a.b.b.c",
        "x",
        "x.y.z",
        "c",
        "x.last",
    ]


async def test_every_subscriber_gets_every_event_but_a_group_shares(make_bus: MakeBus) -> None:
    publisher = await make_bus("pinger")
    alone_1, alone_2, member_1, member_2 = Inbox(), Inbox(), Inbox(), Inbox()
    await (await make_bus("a")).subscribe(["test.ping"], alone_1)
    await (await make_bus("b")).subscribe(["test.ping"], alone_2)
    await (await make_bus("c", "1")).subscribe(["test.ping"], member_1, group="workers")
    await (await make_bus("c", "2")).subscribe(["test.*"], member_2, group="workers")

    for n in range(10):
        await publisher.publish(Ping(n=n))

    await until(lambda: len(member_1.items) + len(member_2.items) == 10)
    await until(lambda: len(alone_1.items) == len(alone_2.items) == 10)
    shared = sorted(envelope.payload(Ping).n for envelope in member_1.items + member_2.items)
    assert shared == list(range(10))
    assert member_1.items and member_2.items, "round-robin: both members take a share"
    assert [envelope.payload(Ping).n for envelope in alone_1.items] == list(range(10))


async def test_a_group_queue_keeps_events_while_its_members_are_away(make_bus: MakeBus) -> None:
    publisher = await make_bus("pinger")
    away = await make_bus("sleeper")
    await away.subscribe(["test.ping"], Inbox(), group="sleepers")
    await away.close()

    await publisher.publish(Ping(n=42))

    inbox = Inbox()
    await (await make_bus("sleeper", "back")).subscribe(["test.ping"], inbox, group="sleepers")
    await until(lambda: len(inbox.items) == 1)
    assert inbox.items[0].payload(Ping).n == 42


async def test_a_failing_event_handler_does_not_stop_the_subscription(
    make_bus: MakeBus, caplog: pytest.LogCaptureFixture
) -> None:
    bus = await make_bus()
    seen: list[int] = []

    async def fragile(envelope: Envelope) -> None:
        seen.append(envelope.seq)
        if envelope.seq == 1:
            raise RuntimeError("cannot digest")

    await bus.subscribe(["test.ping"], fragile)
    await bus.publish(Ping(n=1))
    await bus.publish(Ping(n=2))

    await until(lambda: seen == [1, 2])
    problems = [record for record in caplog.records if record.name == "callmesh.bus"]
    assert [record.exc_info for record in problems] == [None]
    assert "RuntimeError: cannot digest" in problems[0].getMessage()


async def test_work_messages_are_acknowledged_once_handled(make_bus: MakeBus) -> None:
    sender = await make_bus("sender")
    first = await make_bus("worker", "1")
    handled = Inbox()

    async def handler(message: WorkMessage) -> None:
        await handled(message)

    await first.consume("jobs", handler)
    await sender.send("jobs", b"one", headers={"kind": "test"})
    await sender.send("jobs", b"two")
    await until(lambda: len(handled.items) == 2)
    assert [message.body for message in handled.items] == [b"one", b"two"]
    assert handled.items[0].headers == {"kind": "test"}
    await first.close()

    # Acknowledged messages are gone: a new consumer sees only what comes next.
    later = Inbox()

    async def later_handler(message: WorkMessage) -> None:
        await later(message)

    await (await make_bus("worker", "2")).consume("jobs", later_handler)
    await sender.send("jobs", b"three")
    await until(lambda: len(later.items) == 1)
    assert later.items[0].body == b"three"


async def test_sent_messages_wait_for_a_consumer(make_bus: MakeBus) -> None:
    sender = await make_bus("sender")
    await sender.send("backlog", b"early")

    handled = Inbox()

    async def handler(message: WorkMessage) -> None:
        await handled(message)

    await (await make_bus("worker")).consume("backlog", handler)
    await until(lambda: len(handled.items) == 1)
    assert handled.items[0].body == b"early"


async def test_unusable_messages_go_to_the_dead_queue_with_the_reason(
    make_bus: MakeBus, caplog: pytest.LogCaptureFixture
) -> None:
    sender = await make_bus("sender")
    worker = await make_bus("worker")
    applied: list[bytes] = []

    async def handler(message: WorkMessage) -> None:
        if message.body == b"refused":
            raise DeadLetter("gateway gw9 does not exist")
        if message.body == b"crash":
            raise ValueError("unexpected field 'x'")
        applied.append(message.body)

    await worker.consume("commands", handler)
    dead = Inbox()

    async def dead_handler(message: WorkMessage) -> None:
        await dead(message)

    await worker.consume("commands.dead", dead_handler)

    await sender.send("commands", b"refused", headers={"origin": "api"}, correlation_id="c1")
    await sender.send("commands", b"crash")
    await sender.send("commands", b"fine")

    await until(lambda: applied == [b"fine"] and len(dead.items) == 2)
    refused, crashed = dead.items
    assert refused.body == b"refused"
    assert refused.headers == {"origin": "api", REASON_HEADER: "gateway gw9 does not exist"}
    assert refused.correlation_id == "c1"
    assert crashed.body == b"crash"
    assert crashed.headers == {REASON_HEADER: "ValueError: unexpected field 'x'"}
    problems = [record for record in caplog.records if record.name == "callmesh.bus"]
    assert len(problems) == 1, "one line for the unexpected exception, none for DeadLetter"
    assert problems[0].exc_info is None
    assert "ValueError: unexpected field 'x'" in problems[0].getMessage()


async def test_a_work_queue_bound_to_events_settles_them_like_work(make_bus: MakeBus) -> None:
    """Events reach a bound work queue as envelopes; bad ones are dead-lettered with a reason."""
    publisher = await make_bus("publisher")
    worker = await make_bus("worker")
    applied: list[int] = []

    async def handler(message: WorkMessage) -> None:
        ping = Envelope.from_bytes(message.body).payload(Ping)
        if ping.n == 2:
            raise DeadLetter("two is refused")
        applied.append(ping.n)

    await worker.consume("pings", handler, events=["test.#"])
    dead = Inbox()
    await worker.consume("pings.dead", dead)
    for n in (1, 2, 3):
        await publisher.publish(Ping(n=n))
    await until(lambda: applied == [1, 3] and len(dead.items) == 1)
    assert dead.items[0].headers[REASON_HEADER] == "two is refused"


async def test_a_requeued_message_comes_again_neither_acked_nor_dead(make_bus: MakeBus) -> None:
    sender = await make_bus("sender")
    worker = await make_bus("worker")
    seen: list[tuple[bytes, bool]] = []

    async def handler(message: WorkMessage) -> None:
        seen.append((message.body, message.redelivered))
        if len(seen) == 1:
            raise Requeue

    await worker.consume("retried", handler)
    dead = Inbox()
    await worker.consume("retried.dead", dead)
    await sender.send("retried", b"job")
    await until(lambda: len(seen) == 2)
    assert seen == [(b"job", False), (b"job", True)]
    assert dead.items == []


async def test_request_gets_the_reply(make_bus: MakeBus) -> None:
    client = await make_bus("client")
    server = await make_bus("server")

    async def shout(message: WorkMessage) -> bytes:
        if message.body == b"nonsense":
            raise DeadLetter("cannot shout that", reply=b'{"ok": false}')
        return message.body.upper()

    await server.consume("shout", shout)

    assert await client.request("shout", b"hello") == b"HELLO"
    assert await client.request("shout", b"again") == b"AGAIN"
    assert await client.request("shout", b"nonsense") == b'{"ok": false}'


async def test_request_without_a_reply_times_out(make_bus: MakeBus) -> None:
    client = await make_bus("client")
    with pytest.raises(TimeoutError, match="no reply"):
        await client.request("nobody.listens", b"hello?", timeout=0.2)


async def test_a_reply_nobody_asked_for_is_dropped(make_bus: MakeBus) -> None:
    bus = await make_bus()
    replies = 0

    async def handler(message: WorkMessage) -> bytes:
        nonlocal replies
        replies += 1
        return b"unwanted"

    await bus.consume("quiet", handler)
    await bus.send("quiet", b"no reply_to")
    assert await bus.request("quiet", b"with reply_to") == b"unwanted"
    assert replies == 2


async def test_an_unstarted_bus_says_so(make_bus: MakeBus) -> None:
    bus = await make_bus()
    await bus.close()
    assert not bus.connected
    with pytest.raises(BusUnavailable):
        await bus.publish(Ping(n=1))


async def test_close_lets_the_handler_in_progress_finish_and_publish(make_bus: MakeBus) -> None:
    worker = await make_bus("worker")
    watcher = await make_bus("watcher")
    announced = Inbox()
    await watcher.subscribe(["test.ping"], announced)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(message: WorkMessage) -> None:
        started.set()
        await release.wait()
        await worker.publish(Ping(n=len(message.body)))

    await worker.consume("slow", slow)
    await watcher.send("slow", b"abc")
    await started.wait()

    closing = asyncio.create_task(worker.close())
    await asyncio.sleep(0)
    release.set()
    await closing

    await until(lambda: len(announced.items) == 1)
    assert announced.items[0].payload(Ping).n == 3


async def test_a_request_nobody_took_before_its_timeout_is_never_delivered(
    make_bus: MakeBus,
) -> None:
    """A consumer back after an outage must not apply requests their senders gave up on (a
    REGISTER the edge answered 503 long ago would be applied, out of order, after the phone's
    next one)."""
    client = await make_bus("client")
    server = await make_bus("server")
    with pytest.raises(TimeoutError):
        await client.request("late.worker", b"stale", timeout=0.2)
    await asyncio.sleep(0.3)  # RabbitMQ expires a message when it reaches the queue's head
    seen: list[bytes] = []

    async def worker(message: WorkMessage) -> bytes:
        seen.append(message.body)
        return b"done"

    await server.consume("late.worker", worker)
    assert await client.request("late.worker", b"fresh") == b"done"
    assert seen == [b"fresh"]
