"""A running accounting service for the tests: its bus, an edge's bus to publish with, its API.

``deployment`` runs on the in-memory bus with SQLite (unit tests) or on the
real RabbitMQ with PostgreSQL (integration), from the same test code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import fakeredis
import httpx
from pydantic import SecretStr

from services.accounting.service import AccountingService
from services.accounting.settings import AccountingSettings
from shared.api.app import create_app
from shared.bus import Bus, Envelope, WorkMessage
from shared.bus.amqp import AmqpBus
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.contracts.accounting import CALLS_QUEUE, CdrCompleted
from shared.service import Runtime
from shared.settings import Settings
from shared.store import Store
from tests.conftest import RABBITMQ_URL


@dataclass
class Deployment:
    namespace: str
    edge: Bus
    """Publishes the call events, as an edge would."""
    client: httpx.AsyncClient
    services: list[AccountingService]
    completed: list[CdrCompleted] = field(default_factory=list)
    dead: list[WorkMessage] = field(default_factory=list)


async def until(predicate: Callable[[], bool], *, polls: int = 2000) -> None:
    """Wait for ``predicate``; the bound (about 20 s) only keeps a broken test from hanging."""
    for _ in range(polls):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still not true after {polls} polls: {predicate}")


async def until_async(predicate: Callable[[], Any], *, polls: int = 1000) -> None:
    """:func:`until` for a predicate that must be awaited (an API call)."""
    for _ in range(polls):
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still not true after {polls} polls: {predicate}")


@asynccontextmanager
async def deployment(
    namespace: str,
    accounting_url: str,
    *,
    instances: int = 1,
    amqp_url: str | None = None,
    config: AccountingSettings | None = None,
) -> AsyncIterator[Deployment]:
    """``instances`` accounting services on one queue and database, started; all stopped after.

    ``amqp_url`` (the real broker, or a :class:`~tests.netcut.NetCut` in front of it)
    is what the services' buses connect to; the edge and the tap use the broker itself.
    """
    settings = Settings(namespace=namespace, data_dir="/nonexistent")
    config = config or AccountingSettings(
        database_url=SecretStr(accounting_url), close_interval=3600, retry_delay=0.05
    )
    broker = MemoryBroker()
    real = accounting_url.startswith("postgresql")

    def make_bus(service: str, instance: str, url: str | None = None) -> Bus:
        if real:
            return AmqpBus(url or RABBITMQ_URL, namespace, service, instance)
        return MemoryBus(broker, namespace, service, instance)

    async with AsyncExitStack() as stack:
        buses: list[Bus] = []

        async def started(bus: Bus) -> Bus:
            await bus.start()
            buses.append(bus)
            return bus

        services = []
        for n in range(instances):
            bus = await started(make_bus("accounting", f"a{n}", amqp_url))
            store = Store(fakeredis.FakeAsyncRedis(), namespace)
            runtime = Runtime(settings, bus, store, logging.getLogger(f"test.accounting.{n}"))
            service = AccountingService(runtime, config)
            await service.start()
            services.append(service)
        edge = await started(make_bus("edge", "e1"))
        tap = await started(make_bus("billing", "b1"))
        app = create_app("accounting", services[0].routers(), [], None)
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        )
        found = Deployment(namespace, edge, client, services)

        async def on_completed(envelope: Envelope) -> None:
            found.completed.append(envelope.payload(CdrCompleted))

        async def on_dead(message: WorkMessage) -> None:
            found.dead.append(message)

        await tap.subscribe([CdrCompleted.routing_key], on_completed)
        await tap.consume(f"{CALLS_QUEUE}.dead", on_dead)
        try:
            yield found
        finally:
            for service in services:
                await service.stop()
            for bus in buses:
                await bus.close()
            for bus in buses:
                if isinstance(bus, AmqpBus):
                    await bus.delete_topology()
