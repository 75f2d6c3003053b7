"""The proxy driver's publishing: fire-and-forget, wall-clock call events, a bounded backlog."""

from __future__ import annotations

import asyncio
import time
from typing import cast

from services.edge.proxy.actions import Publish
from services.edge.proxy.call_events import CallEvents, CallNotes
from services.edge.proxy.core import Proxy
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from services.edge.runtime.driver import MAX_PENDING_PUBLISHES, ProxyDriver
from services.edge.runtime.sockets import EdgeSockets
from shared.bus.base import Envelope
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.calls import CallStarted
from shared.contracts.event import Event
from tests.services.edge.proxy.test_core import CALLER, EDGE, UDP_IN, Table, invite

NO_SOCKETS = cast(EdgeSockets, None)
"""The driver sends nothing without sockets: these tests only watch what it publishes."""


def proxy() -> Proxy:
    interfaces = Interfaces([Interface("udp", EDGE, 5060, 5060)])
    return Proxy(interfaces, NumberRouter(Table()), call_events=CallEvents("edge-a"))


class SilentBroker(MemoryBus):
    """A broker that takes the connection and never answers a publish (until `release`)."""

    def __init__(self, watched: int) -> None:
        super().__init__(MemoryBroker(), "test", "edge", "edge-a")
        self.attempts = 0
        self.release = asyncio.Event()
        self.reached = asyncio.Event()
        """Set once `watched` publishes are waiting."""
        self._watched = watched

    async def publish(self, event: Event, routing_key: str | None = None) -> Envelope:
        self.attempts += 1
        if self.attempts >= self._watched:
            self.reached.set()
        await self.release.wait()
        return self.envelope(event, routing_key)


async def test_a_call_started_through_the_driver_is_stamped_with_wall_time() -> None:
    broker = MemoryBroker()
    bus, listener = (MemoryBus(broker, "test", name, name) for name in ("edge", "accounting"))
    await bus.start()
    await listener.start()
    seen: list[CallStarted] = []
    arrived = asyncio.Event()

    async def handle(envelope: Envelope) -> None:
        seen.append(envelope.payload(CallStarted))
        arrived.set()

    await listener.subscribe(["edge.call.#"], handle)
    driver = ProxyDriver(proxy(), bus, instance="edge-a")
    driver.start(NO_SOCKETS)
    driver.on_message(invite(), CALLER, UDP_IN)
    await asyncio.wait_for(arrived.wait(), 5)
    [started] = seen
    assert abs(started.at - time.time()) < 5  # the loop's clock turned into wall time
    assert (started.call_id, started.edge, started.callee) == ("call-1", "edge-a", "14075551234")
    await driver.stop()
    await bus.close()
    await listener.close()


async def test_a_broker_that_does_not_answer_holds_a_bounded_backlog() -> None:
    """A lost broker loses events, never calls: past the bound, events are dropped."""
    bus = SilentBroker(watched=MAX_PENDING_PUBLISHES)
    driver = ProxyDriver(proxy(), bus, instance="edge-a")
    event = CallEvents("edge-a").cancelled(CallNotes("call-1", "a1"), 0.0)
    driver._run([event] * (MAX_PENDING_PUBLISHES * 4))
    await asyncio.wait_for(bus.reached.wait(), 5)
    assert bus.attempts == MAX_PENDING_PUBLISHES  # every other one dropped at once
    bus.release.set()
    deadline = time.monotonic() + 5
    while bus.attempts == MAX_PENDING_PUBLISHES and time.monotonic() < deadline:
        driver._run([Publish(event.event)])  # once the backlog drained, publishing goes on
        await asyncio.sleep(0.01)
    assert bus.attempts > MAX_PENDING_PUBLISHES
    await driver.stop()
