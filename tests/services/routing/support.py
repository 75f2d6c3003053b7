"""What the routing and routing-cache integration tests share: a service on a fresh namespace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx

from services.routing.service import RoutingService
from shared.api.app import create_app
from shared.bus.amqp import AmqpBus
from shared.routing_table.cache import RoutingCache
from shared.service import Runtime
from shared.settings import Settings
from shared.store import Store
from tests.conftest import RABBITMQ_URL, REDIS_URL

SEED_GATEWAYS = {
    "1": {"address": "sip:198.51.100.7:5060", "description": "PSTN 1"},
    "2": {"address": "sip:198.51.100.8:5060", "description": "PSTN 2"},
}
SEED_RULES = {
    "1": ("1407", ["1", "2"]),
    "2": ("44", ["2"]),
    "3": ("33", ["1", "2"]),
    "4": ("91", ["2", "1"]),
}


@dataclass
class Deployment:
    """One routing service (with its HTTP API) and any number of edge caches."""

    namespace: str
    store: Store
    service: RoutingService
    client: httpx.AsyncClient
    buses: list[AmqpBus] = field(default_factory=list)
    edges: list[RoutingCache] = field(default_factory=list)
    rabbitmq_url: str = RABBITMQ_URL

    async def bus(self, service: str) -> AmqpBus:
        bus = AmqpBus(self.rabbitmq_url, self.namespace, service, f"i{len(self.buses)}")
        await bus.start()
        self.buses.append(bus)
        return bus

    async def edge(self) -> RoutingCache:
        cache = RoutingCache(self.store, await self.bus("edge"))
        await cache.start()
        self.edges.append(cache)
        return cache

    async def seed(self) -> None:
        for gateway_id, body in SEED_GATEWAYS.items():
            (await self.client.put(f"/v1/gateways/{gateway_id}", json=body)).raise_for_status()
        for rule_id, (prefix, gateways) in SEED_RULES.items():
            rule: dict[str, object] = {"group": "0", "prefix": prefix, "gateways": gateways}
            (await self.client.put(f"/v1/rules/{rule_id}", json=rule)).raise_for_status()


@asynccontextmanager
async def deployment(
    namespace: str, store: Store, rabbitmq_url: str = RABBITMQ_URL, **more: object
) -> AsyncIterator[Deployment]:
    """`more`: other settings (`dns_servers=…`)."""
    settings = Settings(
        namespace=namespace,
        rabbitmq_url=rabbitmq_url,
        redis_url=REDIS_URL,
        media_relay_domains="retail.example=always",
        call_limit_per_source_cps=5,
        **more,  # type: ignore[arg-type]
    )
    bus = AmqpBus(rabbitmq_url, namespace, "routing", "svc")
    await bus.start()
    runtime = Runtime(settings, bus, store, logging.getLogger("test.routing"))
    service = RoutingService(runtime)
    await service.start()
    app = create_app("routing", service.routers(), runtime.readiness, None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        found = Deployment(
            namespace, store, service, client, buses=[bus], rabbitmq_url=rabbitmq_url
        )
        try:
            yield found
        finally:
            for edge in found.edges:
                await edge.stop()
            await service.stop()
            for each in found.buses:
                await each.close()
            for each in found.buses:
                await each.delete_topology()


def routes(cache: RoutingCache, *numbers: str) -> list[tuple[str, list[str]] | None]:
    """What ``cache`` does with each number: (rule id, gateway ids) or None."""
    found: list[tuple[str, list[str]] | None] = []
    for number in numbers:
        route = cache.lookup(number)
        found.append(None if route is None else (route.rule_id, [h.gateway.id for h in route.hops]))
    return found


async def cut_connection(connection_name: str) -> None:
    """Have the broker close the client connection named ``connection_name``."""
    listing = await _rabbitmqctl(
        "list_connections", "-q", "--no-table-headers", "pid", "client_properties"
    )
    needle = f'{{"connection_name","{connection_name}"}}'
    pids = [line.split("\t", 1)[0] for line in listing.splitlines() if needle in line]
    assert pids, f"no connection named {connection_name!r}"
    for pid in pids:
        await _rabbitmqctl("close_connection", pid, "test: connection cut")


async def _rabbitmqctl(*args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()
