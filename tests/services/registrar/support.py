"""What the registrar integration tests share: a registrar on a fresh namespace, an edge's bus."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bench.registrar import Phone, send
from services.registrar.service import RegistrarService
from shared.api.app import create_app
from shared.bus import Envelope
from shared.bus.amqp import AmqpBus
from shared.contracts.registrar import REGISTRAR_EVENTS
from shared.service import Runtime
from shared.settings import Settings
from shared.sip.message import Response
from shared.store import Store
from tests.conftest import RABBITMQ_URL, REDIS_URL

DOMAIN = "example.com"


@dataclass
class Registrar:
    """One registrar service with its HTTP API, and an edge's bus that hears its events."""

    store: Store
    service: RegistrarService
    client: httpx.AsyncClient
    edge: AmqpBus
    events: asyncio.Queue[Envelope]

    async def subscriber(self, user: str, password: str = "secret") -> Phone:
        body = {"domain": DOMAIN, "password": password}
        (await self.client.put(f"/v1/subscribers/{user}", json=body)).raise_for_status()
        return Phone(user, DOMAIN, password)

    async def send(
        self,
        phone: Phone,
        sip: bytes,
        transport: str = "udp",
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> Response:
        return await send(self.edge, phone.via_edge(sip, transport=transport), timeout)

    async def registered(self, phone: Phone, **options: Any) -> Response:
        """Challenge, then the authorized REGISTER; the 200 (or whatever came)."""
        first = await self.send(phone, phone.register(**options))
        assert first.status == 401
        phone.learn(first)
        return await self.send(phone, phone.register(**options))

    async def event(self, kind: str, within: float = 5.0) -> Envelope:
        """The next event of type ``kind``, skipping others."""
        async with asyncio.timeout(within):
            while True:
                envelope = await self.events.get()
                if envelope.type == kind:
                    return envelope

    async def bindings(self, aor: str) -> list[dict[str, object]]:
        reply = await self.client.get(f"/v1/registrations/{aor}")
        reply.raise_for_status()
        found: list[dict[str, object]] = reply.json()["bindings"]
        return found


@asynccontextmanager
async def registrar(namespace: str, store: Store, **settings: object) -> AsyncIterator[Registrar]:
    config = Settings(
        namespace=namespace,
        rabbitmq_url=RABBITMQ_URL,
        redis_url=REDIS_URL,
        registrar_workers=4,
        **settings,  # type: ignore[arg-type]
    )
    bus = AmqpBus(RABBITMQ_URL, namespace, "registrar", "svc")
    edge = AmqpBus(RABBITMQ_URL, namespace, "edge", "edge-a")
    await bus.start()
    await edge.start()
    events: asyncio.Queue[Envelope] = asyncio.Queue()

    async def heard(envelope: Envelope) -> None:
        await events.put(envelope)

    await edge.subscribe([REGISTRAR_EVENTS], heard)
    runtime = Runtime(config, bus, store, logging.getLogger("test.registrar"))
    service = RegistrarService(runtime)
    await service.start()
    app = create_app("registrar", service.routers(), runtime.readiness, None)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Registrar(store, service, client, edge, events)
    finally:
        await service.stop()
        for each in (edge, bus):
            await each.close()
        await bus.delete_topology()
