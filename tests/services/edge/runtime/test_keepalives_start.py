"""Keepalives across a worker's start and a broker's absence, on local sockets.

Bindings the worker held before it started are read from the store (the
embedded one) and pinged; an unreachable report the bus refused is sent again
once the bus is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.edge import metrics
from services.edge.keepalive.schedule import KeepaliveSchedule
from services.edge.runtime.affinity import Deliver
from services.edge.runtime.keepalives import KeepaliveRunner
from services.edge.runtime.sockets import EdgeSockets
from services.edge.runtime.startup import interfaces_of
from shared.bus.memory import MemoryBus
from shared.contracts.registrar import UnreachableBinding
from shared.registrar.layout import aor_key
from shared.registrar.model import Binding
from shared.settings import ListenAddress, Settings
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from shared.store import Store
from shared.store.embedded import open_embedded
from tests.services.edge.runtime.test_keepalives import Phone, edge_and_registrar
from tests.shared.bus.support import until

EDGE = "edge-a"


@dataclass
class World:
    store: Store
    sockets: EdgeSockets
    bus: MemoryBus
    phone: Phone
    phone_port: int
    reports: asyncio.Queue[UnreachableBinding]

    def runner(self, timeout: float = 60.0) -> KeepaliveRunner:
        interfaces = interfaces_of(self.sockets.bound, None)
        schedule = KeepaliveSchedule(interval=0.1, timeout=timeout)
        return KeepaliveRunner(schedule, self.bus, self.sockets, interfaces, EDGE, store=self.store)

    def binding(self, user: str, *, edge: str = EDGE, contact: str = "192.168.1.5:5060") -> Binding:
        return Binding(
            aor=f"sip:{user}@example.com",
            contact=f"sip:{user}@{contact}",
            expires_at=time.time() + 3600,
            received=f"sip:127.0.0.1:{self.phone_port}",
            transport="udp",
            edge=edge,
            call_id=user,
            cseq=1,
        )

    async def write(self, stored: Binding) -> None:
        key = aor_key(self.store, stored.aor)
        await self.store.redis.hset(key, stored.contact, stored.model_dump_json())


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    loop = asyncio.get_running_loop()
    store = await open_embedded(Settings(data_dir=str(tmp_path), namespace="t"))
    sockets = EdgeSockets(lambda *_: None)
    await sockets.open([ListenAddress("udp", "127.0.0.1", 0)], shared=False)
    phone = Phone(200)
    transport, _ = await loop.create_datagram_endpoint(lambda: phone, ("127.0.0.1", 0))
    phone.transport = transport
    bus, registrar, reports = await edge_and_registrar()
    port = transport.get_extra_info("sockname")[1]
    yield World(store, sockets, bus, phone, port, reports)
    transport.close()
    await sockets.close()
    await registrar.close()
    await bus.close()
    await store.close()


def deliver_to(runner: KeepaliveRunner) -> Deliver:
    def deliver(data: bytes, source: Destination, _listener: Listener, _at: float | None) -> None:
        runner.claims(data, source)

    return deliver


async def test_bindings_stored_before_the_worker_started_are_pinged(world: World) -> None:
    natted = world.binding("alice")
    await world.write(natted)
    await world.write(world.binding("bob", edge="edge-b"))  # another edge's: not ours to ping
    public = f"127.0.0.1:{world.phone_port}"
    await world.write(world.binding("carol", contact=public))  # where it came from: no NAT
    runner = world.runner()
    world.sockets.on_message = deliver_to(runner)
    await runner.start()
    try:
        await asyncio.wait_for(world.phone.eight.wait(), 10)
        assert metrics.KEEPALIVES_LOADED.value == 1
        assert len(runner.schedule) == 1
        assert world.reports.empty()
    finally:
        await runner.stop()


async def test_a_report_the_bus_refused_is_sent_again_once_it_is_back(world: World) -> None:
    world.phone.answering = False
    runner = world.runner(timeout=0.3)
    await runner.start()
    try:
        delayed = metrics.KEEPALIVE_REPORTS_DELAYED.value
        await world.bus.close()  # the broker away: sends fail
        runner.note(world.binding("alice").location(), gone=False)
        await until(lambda: metrics.KEEPALIVE_REPORTS_DELAYED.value == delayed + 1)
        assert world.reports.empty()
        await world.bus.start()
        report = await asyncio.wait_for(world.reports.get(), 10)
        assert report.aor == "sip:alice@example.com"
        assert metrics.KEEPALIVE_REPORTS_DELAYED.value == delayed + 1  # one line, not per round
    finally:
        await runner.stop()
