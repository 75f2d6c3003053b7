"""The proxy driver's publishing: fire-and-forget, wall-clock call events, none lost to a stall."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any, cast

import pytest

from services.edge.feeds.protection import ProtectionFeed
from services.edge.proxy.actions import Action, Publish
from services.edge.proxy.call_events import CallEvents, CallNotes
from services.edge.proxy.core import Proxy
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from services.edge.runtime.driver import ProxyDriver
from services.edge.runtime.journal import Journal
from services.edge.runtime.loop_timer import TIMER_TICK
from services.edge.runtime.sockets import EdgeSockets
from shared.bus.base import Envelope
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.calls import CallStarted
from shared.contracts.edge import GatewayFailed
from shared.contracts.event import Event
from shared.contracts.protection import ScannerFlagged, SourceBlocked
from shared.settings import ListenAddress
from shared.sip.transaction import Send
from shared.sip.transport.base import OversizeDatagramError, TransportError
from shared.sip.transport.destination import Destination
from tests.services.edge.proxy.test_core import CALLER, EDGE, UDP_IN, Table, invite
from tests.shared.bus.support import until


def unopened_sockets() -> EdgeSockets:
    """Sockets never opened: the driver sends nothing, these tests watch what it publishes."""
    return EdgeSockets(lambda *_: None)


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


async def started_through_driver(message: bytes, outbox: Journal | None = None) -> CallStarted:
    """The `CallStarted` a driver publishes for the INVITE `message` (on the in-process bus,
    as a subscriber reads it), once its journal, if any, has it settled."""
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
    driver = ProxyDriver(proxy(), bus, instance="edge-a", outbox=outbox)
    driver.start(unopened_sockets())
    driver.on_message(message, CALLER, UDP_IN, None)
    await asyncio.wait_for(arrived.wait(), 5)
    if outbox is not None:
        await until(lambda: outbox.unsettled == 0)
    await driver.stop()
    await bus.close()
    await listener.close()
    [started] = seen
    return started


async def test_a_call_started_through_the_driver_is_stamped_with_wall_time() -> None:
    started = await started_through_driver(invite())
    assert abs(started.at - time.time()) < 5  # the loop's clock turned into wall time
    assert (started.call_id, started.edge, started.callee) == ("call-1", "edge-a", "14075551234")


async def test_events_wait_for_a_broker_that_does_not_answer_yet() -> None:
    """A stalled broker delays events, it does not lose them (a cap of 256 in flight did)."""
    count = 1000
    bus = SilentBroker(watched=1)
    driver = ProxyDriver(proxy(), bus, instance="edge-a")
    event = CallEvents("edge-a").cancelled(CallNotes("call-1", "a1"), 0.0)
    driver._run([event] * count)
    await asyncio.wait_for(bus.reached.wait(), 5)
    assert driver.publisher.waiting > 0 and driver.publisher.dropped == 0
    bus.release.set()
    await until(lambda: bus.attempts == count)
    await driver.stop()


async def test_a_steps_events_are_journaled_before_its_messages_leave(tmp_path: Path) -> None:
    """Write-ahead: a worker killed right after a message of a call left still has that
    call's event journaled, whatever the order the core listed them in."""
    journal = Journal.claim(tmp_path, 0, max_bytes=1 << 20)
    assert journal is not None
    bus = SilentBroker(watched=1)
    driver = ProxyDriver(proxy(), bus, instance="edge-a", outbox=journal)
    outbox: Journal = journal
    journaled_at_send: list[int] = []

    class Watched(socket.socket):
        """The edge's own UDP socket, which notes the journal as each datagram leaves."""

        def sendto(self, data: Any, *address: Any) -> int:
            journaled_at_send.append(outbox.unsettled)
            return super().sendto(data, *address)

    sockets = EdgeSockets(lambda *_: None)
    await sockets.open([ListenAddress("udp", "127.0.0.1", 0)], shared=False)
    [endpoint] = sockets._udp
    bound = endpoint.socket  # the same descriptor, which the loop reads and closing frees
    endpoint._sock = Watched(bound.family, bound.type, fileno=bound.detach())
    far_end = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far_end.bind(("127.0.0.1", 0))
    try:
        driver.start(sockets)
        answered = CallEvents("edge-a").cancelled(CallNotes("call-1", "a1"), 0.0)
        to = Destination("udp", "127.0.0.1", far_end.getsockname()[1])
        driver._run([Send(b"SIP/2.0 200 OK\r\n\r\n", to), answered])
        assert journaled_at_send == [1]
        assert far_end.recv(100) == b"SIP/2.0 200 OK\r\n\r\n"
        bus.release.set()
        await driver.stop()
    finally:
        await sockets.close()
        far_end.close()


async def test_sends_that_fail_again_and_again_are_one_log_line_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer can make sends fail at any rate (answers too big for a datagram, a dead host)."""
    bus = MemoryBus(MemoryBroker(), "test", "edge", "edge-a")
    driver = ProxyDriver(proxy(), bus, instance="edge-a")
    send = Send(b"SIP/2.0 200 OK\r\n\r\n", Destination("udp", "192.0.2.1", 5060))
    with caplog.at_level(logging.INFO, logger="callmesh.edge"):
        for _ in range(30):
            driver._send_failed(send, OversizeDatagramError("udp: 70000-byte response"))
            driver._send_failed(send, TransportError("connection refused"))
        other = Send(send.data, Destination("udp", "192.0.2.2", 5060))
        driver._send_failed(other, TransportError("connection refused"))  # another peer
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3 and "192.0.2.2:5060" in lines[2]
    assert "70000-byte response: not sent" in lines[0]
    assert "send to 192.0.2.1:5060/udp failed: connection refused" in lines[1]


async def test_a_message_arms_the_loop_timer_on_the_tick_of_the_cores_next_deadline() -> None:
    """After each message the driver's one loop timer stands on the tick at or after the
    core's earliest deadline (an INVITE's own: its server transaction's and its branch's)."""
    bus = MemoryBus(MemoryBroker(), "test", "edge", "edge-a")
    driver = ProxyDriver(proxy(), bus, instance="edge-a")
    driver.start(unopened_sockets())
    assert driver.timer.at is None
    driver.on_message(invite(), CALLER, UDP_IN, None)
    deadline = driver.proxy.next_deadline()
    armed = driver.timer.at
    assert deadline is not None and armed is not None
    assert deadline <= armed < deadline + TIMER_TICK
    assert abs(armed / TIMER_TICK - round(armed / TIMER_TICK)) < 1e-6
    await driver.stop()
    assert driver.timer.at is None


async def test_after_its_timer_fires_the_driver_arms_it_for_the_next_deadline() -> None:
    """A fired timer is not armed again by itself: the driver asks the core for its next
    deadline, and a stopped driver's timer stays disarmed."""
    bus = MemoryBus(MemoryBroker(), "test", "edge", "edge-a")
    driver = ProxyDriver(proxy(), bus, instance="edge-a")
    driver.start(unopened_sockets())
    driver.on_message(invite(), CALLER, UDP_IN, None)
    deadline = driver.proxy.next_deadline()
    driver.timer.cancel()
    driver._fire()  # as the loop calls it: nothing is due yet
    armed = driver.timer.at
    assert deadline is not None and armed is not None
    assert deadline <= armed < deadline + TIMER_TICK
    await driver.stop()
    driver._reschedule()  # a round trip's late outcome, after the stop
    assert driver.timer.at is None


async def test_a_call_to_a_user_no_json_can_hold_is_handled_and_recorded(tmp_path: Path) -> None:
    """An INVITE to ``sip:%FF@edge``: the user unescapes to a byte no text holds (U+DCFF),
    which no JSON writes; its call is handled all the same, its event journaled and
    published with the byte as received (``%FF``), where it raised out of the driver."""
    journal = Journal.claim(tmp_path, 0, max_bytes=1 << 20)
    assert journal is not None
    started = await started_through_driver(invite(f"sip:%FF@{EDGE}"), journal)
    assert (started.callee_dialled, started.callee) == ("%FF", "%FF")


async def published_by(
    actions: list[Action],
    count: int,
    protection: RecordingFeed | None = None,
) -> list[str]:
    """The routing keys of what a driver publishes for the core's `actions` (on the in-process
    bus, as a subscriber reads them): `count` of them, then 50 ms in which no more may come;
    with `protection`, once it also recorded what the driver gave it."""
    broker = MemoryBroker()
    bus, listener = (MemoryBus(broker, "test", name, name) for name in ("edge", "api"))
    await bus.start()
    await listener.start()
    seen: list[str] = []

    async def handle(envelope: Envelope) -> None:
        seen.append(envelope.type)

    await listener.subscribe(["edge.#"], handle)
    feed = cast(ProtectionFeed | None, protection)
    driver = ProxyDriver(proxy(), bus, instance="edge-a", protection=feed)
    driver._run(actions)
    await until(lambda: len(seen) == count and (protection is None or protection.recorded != []))
    await asyncio.sleep(0.05)  # nothing more comes, and the feed records the rest
    await driver.stop()
    await bus.close()
    await listener.close()
    return sorted(seen)


CANCELLED = CallEvents("edge-a").cancelled(CallNotes("call-1", "a1"), 0.0)


async def test_a_targets_failures_are_merged_and_call_events_pass_beside_them() -> None:
    """The driver tells a call event by its type and offers it as it is; a failure report
    still passes `FailureReports` first: three of one gateway within its second are one
    report (the others merged into the next), whatever call events come between."""
    failure = Publish(
        GatewayFailed(
            address="192.0.2.1:5060", reason="status", status=503, method="INVITE",
            call_id="call-1", gateway_id="gw1",
        )
    )  # fmt: skip # one line per field would only lengthen it
    actions: list[Action] = [failure, CANCELLED, failure, CANCELLED, failure]
    assert await published_by(actions, 3) == [
        "edge.call.cancelled",
        "edge.call.cancelled",
        "edge.gateway.failed",
    ]


class RecordingFeed:
    """A protection feed that keeps what it is asked to record (the real one writes the
    store, `tests/services/edge/feeds/test_protection.py`)."""

    def __init__(self) -> None:
        self.recorded: list[Event] = []

    async def record(self, event: SourceBlocked | ScannerFlagged) -> None:
        self.recorded.append(event)

    async def stop(self) -> None:
        return None


async def test_protection_states_are_recorded_and_call_events_are_not() -> None:
    """A flood block and a scanner flag go to the protection feed (the store the API lists)
    and are published; a call event between them is only published."""
    feed = RecordingFeed()
    blocked = SourceBlocked(
        source="192.0.2.9", rate=900.0, limit=100, period=1.0, block_time=60.0, edge="edge-a"
    )
    flagged = ScannerFlagged(source="192.0.2.8", reason="sweep", flag_time=60.0, edge="edge-a")
    actions: list[Action] = [Publish(blocked), CANCELLED, Publish(flagged)]
    assert await published_by(actions, 3, feed) == [
        "edge.call.cancelled",
        "edge.scanner.flagged",
        "edge.source.blocked",
    ]
    assert feed.recorded == [blocked, flagged]
