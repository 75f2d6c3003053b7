"""The routing-table service: the HTTP API and the command queue over the table in Redis."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter

from services.routing.api.entities import entity_router
from services.routing.api.route import route_router
from services.routing.api.rules_import import import_router
from services.routing.commands import CommandHandler
from services.routing.writer import TableWriter
from shared.contracts.routing import COMMANDS_QUEUE
from shared.health.feed import GatewayHealthFeed
from shared.routing_table.cache import RoutingCache
from shared.routing_table.model import Carrier, Dialplan, Gateway, Manipulation, Rule
from shared.routing_table.store import RoutingStore
from shared.service import Runtime, Service


class RoutingService(Service):
    name = "routing"

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.writer = TableWriter(RoutingStore(self.store), self.bus, self.log)
        self.cache = RoutingCache(self.store, self.bus)
        """The dry run's view of the table: the very cache the edges run."""
        self.health = GatewayHealthFeed(self.store, self.bus, self.cache.health)
        """…with each gateway's state, followed as the edges follow it."""
        runtime.readiness.append(("routing-table", self._table_ready))

    def routers(self) -> Sequence[APIRouter]:
        return (
            entity_router("gateway", "gateways", Gateway, self.writer),
            entity_router("carrier", "carriers", Carrier, self.writer),
            import_router(self.writer, self.settings.api_max_import_body),
            entity_router("rule", "rules", Rule, self.writer),
            entity_router("dialplan", "dialplans", Dialplan, self.writer),
            entity_router("manipulation", "manipulations", Manipulation, self.writer),
            route_router(self.cache),
        )

    async def start(self) -> None:
        await self.bus.declare_queue(COMMANDS_QUEUE)
        await self.cache.start()
        await self.health.start()
        await self.bus.consume(COMMANDS_QUEUE, CommandHandler(self.writer))
        self.log.info("routing ready at table version %d", self.cache.version)

    async def stop(self) -> None:
        await self.health.stop()
        await self.cache.stop()

    async def _table_ready(self) -> str | None:
        return None if self.cache.ready else "routing table not loaded yet"
