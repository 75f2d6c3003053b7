"""`EventFeed`: load, then follow; events during a load wait for it; a failed load is retried."""

from __future__ import annotations

import asyncio
import logging

from shared.bus import Envelope
from shared.bus.feed import EventFeed
from shared.bus.memory import MemoryBroker, MemoryBus
from tests.shared.bus.support import Ping, until


class Numbers(EventFeed):
    """The stored state is a list of numbers; each ``test.ping`` appends its ``n``."""

    def __init__(
        self,
        bus: MemoryBus,
        stored: list[int],
        *,
        gate: asyncio.Event | None = None,
        failures: int = 0,
    ) -> None:
        super().__init__(bus, ["test.ping"], logging.getLogger("test.feed"))
        self.stored = stored
        self.gate = gate
        self.failures = failures
        self.loads = 0
        self.seen: list[int] = []

    async def load(self) -> None:
        self.loads += 1
        if self.failures:
            self.failures -= 1
            raise OSError("store unreachable")
        snapshot = list(self.stored)
        if self.gate is not None:
            await self.gate.wait()  # the load is slow: events arrive meanwhile
        self.seen = snapshot

    async def apply(self, envelope: Envelope) -> None:
        self.seen.append(envelope.payload(Ping).n)


async def started_bus(broker: MemoryBroker, service: str) -> MemoryBus:
    bus = MemoryBus(broker, "ns", service, "i1")
    await bus.start()
    return bus


async def test_an_event_during_the_load_is_applied_after_it_not_lost() -> None:
    broker = MemoryBroker()
    bus, publisher = await started_bus(broker, "edge"), await started_bus(broker, "test")
    gate = asyncio.Event()
    feed = Numbers(bus, [1], gate=gate)
    starting = asyncio.create_task(feed.start())
    await until(lambda: feed.loads == 1)
    await publisher.publish(Ping(n=2))  # newer than what the load read
    await until(lambda: bool(feed._held))  # delivered, and held: the load has not finished
    assert feed.seen == []
    gate.set()
    await asyncio.wait_for(starting, 5)
    assert feed.seen == [1, 2]
    await publisher.publish(Ping(n=3))
    await until(lambda: feed.seen == [1, 2, 3])
    await feed.stop()
    await bus.close()
    await publisher.close()


async def test_a_failed_load_is_retried_and_start_waits_for_success() -> None:
    bus = await started_bus(MemoryBroker(), "edge")
    feed = Numbers(bus, [7], failures=1)
    await asyncio.wait_for(feed.start(), 5)
    assert (feed.loads, feed.seen) == (2, [7])
    feed.stored = [8]
    feed.reload_soon()
    await until(lambda: feed.seen == [8])
    await feed.stop()
    await bus.close()
