"""What only the in-process bus promises beyond the shared contract."""

from __future__ import annotations

import pytest

from shared.bus import WorkMessage
from shared.bus.base import REASON_HEADER
from shared.bus.memory import MemoryBroker, MemoryBus
from tests.shared.bus.support import Inbox, Ping, until


async def started(broker: MemoryBroker, service: str, instance: str = "i1") -> MemoryBus:
    bus = MemoryBus(broker, "ns", service, instance)
    await bus.start()
    return bus


async def test_handlers_run_after_publish_returns_not_inside_it() -> None:
    bus = await started(MemoryBroker(), "svc")
    inbox = Inbox()
    await bus.subscribe(["#"], inbox)

    await bus.publish(Ping(n=1))

    assert inbox.items == [], "a handler ran inside publish"
    await until(lambda: len(inbox.items) == 1)
    await bus.close()


async def test_a_group_takes_turns_exactly() -> None:
    broker = MemoryBroker()
    publisher = await started(broker, "pinger")
    members = [Inbox(), Inbox(), Inbox()]
    for number, inbox in enumerate(members):
        member = await started(broker, "worker", str(number))
        await member.subscribe(["test.ping"], inbox, group="workers")

    for n in range(9):
        await publisher.publish(Ping(n=n))

    await until(lambda: sum(len(inbox.items) for inbox in members) == 9)
    assert [len(inbox.items) for inbox in members] == [3, 3, 3]


async def test_closing_a_member_hands_its_unstarted_messages_back() -> None:
    broker = MemoryBroker()
    sender = await started(broker, "sender")
    leaving = await started(broker, "worker", "leaving")
    handled: list[bytes] = []

    async def handler(message: WorkMessage) -> None:
        handled.append(message.body)

    await leaving.consume("jobs", handler)
    for body in (b"1", b"2", b"3"):
        await sender.send("jobs", body)
    await leaving.close()  # before its consumer task ran at all

    staying = await started(broker, "worker", "staying")
    await staying.consume("jobs", handler)
    await until(lambda: len(handled) == 3)
    assert handled == [b"1", b"2", b"3"]
    assert broker.depth("ns.jobs") == 0


async def test_dead_letters_wait_in_the_dead_queue() -> None:
    broker = MemoryBroker()
    bus = await started(broker, "worker")

    async def refuse(message: WorkMessage) -> None:
        raise KeyError("gw1")

    await bus.consume("commands", refuse)
    await bus.send("commands", b"x", headers={"origin": "api"})
    await until(lambda: broker.depth("ns.commands.dead") == 1)
    # Kept for whoever reads the dead queue later, with the reason it died.
    dead = Inbox()
    await bus.consume("commands.dead", dead)
    await until(lambda: len(dead.items) == 1)
    (message,) = dead.items
    assert message.body == b"x"
    assert message.headers == {"origin": "api", REASON_HEADER: "KeyError: 'gw1'"}
    assert broker.depth("ns.commands.dead") == 0


async def test_an_undecodable_event_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    broker = MemoryBroker()
    bus = await started(broker, "listener")
    inbox = Inbox()
    await bus.subscribe(["test.#"], inbox)

    broker.route(bus.exchange_name, "test.ping", WorkMessage(b"{not json"))
    await bus.publish(Ping(n=7))

    await until(lambda: len(inbox.items) == 1)
    assert inbox.items[0].payload(Ping).n == 7
    problems = [record for record in caplog.records if record.name == "callmesh.bus"]
    assert len(problems) == 1 and problems[0].exc_info is None
    assert "undecodable" in problems[0].getMessage()
