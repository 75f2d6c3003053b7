"""What the health integration tests share: far ends to probe, a running service, an event tap."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
import redis.asyncio as aioredis

from deploy.labs.ports import free_port
from services.health.service import HealthService
from services.health.settings import HealthSettings
from shared.api.app import create_app
from shared.bus import Envelope
from shared.bus.amqp import AmqpBus
from shared.contracts.event import Event
from shared.contracts.health import TargetState
from shared.routing_table.changes import Change
from shared.routing_table.model import Gateway
from shared.routing_table.store import RoutingStore
from shared.service import Runtime
from shared.settings import Settings
from shared.sip.message import Request, parse_message
from shared.sip.responses import make_response
from shared.store import Store
from tests.conftest import RABBITMQ_URL, REDIS_URL

FAST = HealthSettings(
    probe_interval=1.0,
    probe_timeout=0.5,
    failures_to_down=2,
    successes_to_up=1,
    lease_ttl=1.5,
)


class Responder(asyncio.DatagramProtocol):
    """A far end answering OPTIONS with ``status``; counts probes (distinct branches)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.branches: list[str] = []
        self.sources: list[tuple[str | int, ...]] = []
        """Where each probe came from (one entry per branch): which prober sent it."""
        self.times: list[float] = []
        """When each probe arrived (monotonic)."""
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        request = parse_message(data)
        if not isinstance(request, Request) or request.method != "OPTIONS":
            return
        branch = request.top_via.branch or ""
        if branch not in self.branches:
            self.branches.append(branch)
            self.sources.append(addr)
            self.times.append(time.monotonic())
        assert self._transport is not None
        self._transport.sendto(make_response(request, self.status).to_bytes(), addr)

    @property
    def probes(self) -> int:
        return len(self.branches)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def wait_until(check: Callable[[], bool], within: float) -> None:
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.05)


async def probe_gap(far_end: Responder, within: float) -> float:
    """Seconds between the next two probes: how long a "no probes" check must watch at least."""
    seen = far_end.probes
    await wait_until(lambda: far_end.probes >= seen + 2, within)
    return far_end.times[seen + 1] - far_end.times[seen]


async def no_probes_for(far_end: Responder, seconds: float) -> None:
    """Assert ``far_end`` gets no probe in ``seconds`` (after a positive control set them)."""
    seen = far_end.probes
    await asyncio.sleep(seconds)
    assert far_end.probes == seen, f"{far_end.probes - seen} probes in {seconds:.1f} s"


async def responder(port: int, status: int = 200) -> Responder:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: Responder(status), local_addr=("127.0.0.1", port)
    )
    return protocol


async def seed_gateways(store: Store, gateways: dict[str, str]) -> None:
    """Write gateways straight into the routing table, as the routing service stores them."""
    changes = [
        Change("upsert", "gateway", gid, Gateway(address=address))
        for gid, address in gateways.items()
    ]
    await RoutingStore(store).apply(changes)


@dataclass
class Tap:
    """Every ``health.…`` event, as an edge would receive it."""

    bus: AmqpBus
    events: list[Envelope] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, envelope: Envelope) -> None:
        self.events.append(envelope)
        self.arrived.set()

    def states(self, target: str) -> list[TargetState]:
        return [
            e.payload(TargetState)
            for e in self.events
            if e.type == TargetState.routing_key and e.data["target"] == target
        ]

    async def until(self, check: Callable[[], bool], within: float) -> None:
        """Wait until ``check()`` holds over the events seen; fails after ``within`` s."""
        async with asyncio.timeout(within):
            while True:
                self.arrived.clear()  # before checking, so no arrival is missed
                if check():
                    return
                await self.arrived.wait()

    async def wait_for(
        self, target: str, check: Callable[[TargetState], bool], within: float
    ) -> TargetState:
        """The first state event of ``target`` passing ``check``; fails after ``within`` s."""
        await self.until(lambda: any(check(s) for s in self.states(target)), within)
        return next(s for s in self.states(target) if check(s))

    def of_type(self, routing_key: str) -> list[Envelope]:
        return [e for e in self.events if e.type == routing_key]


@asynccontextmanager
async def tap(namespace: str) -> AsyncIterator[Tap]:
    bus = AmqpBus(RABBITMQ_URL, namespace, "edge", "tap")
    await bus.start()
    found = Tap(bus)
    await bus.subscribe(["health.#"], found.handle)
    try:
        yield found
    finally:
        await bus.close()


@dataclass
class Instance:
    service: HealthService
    client: httpx.AsyncClient
    store: Store
    bus: AmqpBus

    async def target(self, target_id: str) -> dict[str, object]:
        response = await self.client.get(f"/v1/targets/{quote(target_id)}")
        response.raise_for_status()
        body: dict[str, object] = response.json()
        return body

    async def probed(self, target_id: str, within: float) -> dict[str, object]:
        """The target once a probe has been judged (latency events are not published)."""
        async with asyncio.timeout(within):
            while True:
                found = await self.target(target_id)
                if found["checked_at"] is not None:
                    return found
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self.client.aclose()
        await self.service.stop()
        await self.bus.close()
        await self.store.close()


async def start_instance(
    namespace: str,
    name: str = "h1",
    config: HealthSettings = FAST,
    dns_servers: str = "",
    tls_ca: str | None = None,
) -> Instance:
    """A health service in this process, with its own bus and Redis client, and its HTTP API
    (`tls_ca`: the CA bundle its TLS probes check gateways against)."""
    settings = Settings(
        namespace=namespace,
        rabbitmq_url=RABBITMQ_URL,
        redis_url=REDIS_URL,
        instance=name,
        dns_servers=dns_servers,
        tls_ca=tls_ca,
    )
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    bus = AmqpBus(RABBITMQ_URL, namespace, "health", name)
    await bus.start()
    runtime = Runtime(settings, bus, store, logging.getLogger(f"test.health.{name}"))
    service = HealthService(runtime, config)
    await service.start()
    app = create_app("health", service.routers(), runtime.readiness, None)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return Instance(service, client, store, bus)


async def publish(namespace: str, service: str, event: Event) -> None:
    bus = AmqpBus(RABBITMQ_URL, namespace, service, "test")
    await bus.start()
    try:
        await bus.publish(event)
    finally:
        await bus.close()


class HealthProcess:
    """``python -m services.health`` as its own process, to be killed like a crashed prober."""

    def __init__(self, namespace: str, name: str) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "CALLMESH_RABBITMQ_URL": RABBITMQ_URL,
            "CALLMESH_REDIS_URL": REDIS_URL,
            "CALLMESH_NAMESPACE": namespace,
            "CALLMESH_INSTANCE": name,
            "CALLMESH_HTTP_LISTEN": self.url.removeprefix("http://"),
            "CALLMESH_HEALTH_PROBE_INTERVAL": str(FAST.probe_interval),
            "CALLMESH_HEALTH_PROBE_TIMEOUT": str(FAST.probe_timeout),
            "CALLMESH_HEALTH_FAILURES_TO_DOWN": str(FAST.failures_to_down),
            "CALLMESH_HEALTH_LEASE_TTL": str(FAST.lease_ttl),
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.health"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill(self) -> None:
        """SIGKILL: no clean stop, the lease is left to expire."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class Sipp:
    """SIPp as the probed far end: ``-sn uas -aa`` answers OPTIONS with 200."""

    def __init__(self, port: int) -> None:
        self.process = subprocess.Popen(
            ["sipp", "-sn", "uas", "-aa", "-i", "127.0.0.1", "-p", str(port), "-nostdin"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
