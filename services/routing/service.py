"""The routing-table service: the HTTP API and the command queue over the table in Redis."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter

from services.routing.api.entities import entity_router
from services.routing.api.fraud import fraud_router
from services.routing.api.limits import limits_router
from services.routing.api.route import route_router
from services.routing.api.rules_import import import_router
from services.routing.commands import CommandHandler
from services.routing.fraud_ends import CallEnds
from services.routing.writer import TableWriter
from shared.contracts.fraud import FRAUD_CALL_ENDS, FRAUD_CALLS_QUEUE
from shared.contracts.routing import COMMANDS_QUEUE
from shared.dns.resolver import DnsResolver
from shared.fraud.store import FraudStore
from shared.health.feed import GatewayHealthFeed
from shared.health.store import HealthStore
from shared.limits.store import SharedLimits
from shared.routing_table.cache import RoutingCache
from shared.routing_table.media import parse_domain_policies
from shared.routing_table.model import (
    Carrier,
    Dialplan,
    FraudRule,
    Gateway,
    Manipulation,
    Peer,
    Rule,
)
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
        self.limits = SharedLimits(self.store)
        """The edges' shared call limits, for the operator's view and the dry run."""
        self.fraud = FraudStore.from_settings(self.store, self.settings)
        """The edges' fraud counts and blocks: the operator's view, unblocking, call ends."""
        runtime.readiness.append(("routing-table", self._table_ready))

    def routers(self) -> Sequence[APIRouter]:
        return (
            entity_router("gateway", "gateways", Gateway, self.writer),
            entity_router("carrier", "carriers", Carrier, self.writer),
            import_router(self.writer, self.settings.api_max_import_body),
            entity_router("rule", "rules", Rule, self.writer),
            entity_router("dialplan", "dialplans", Dialplan, self.writer),
            entity_router("manipulation", "manipulations", Manipulation, self.writer),
            entity_router("peer", "peers", Peer, self.writer),
            entity_router("fraud_rule", "fraud/rules", FraudRule, self.writer),
            fraud_router(self.cache, self.fraud, self.bus),
            route_router(
                self.cache,
                DnsResolver.from_settings(self.settings),
                self.limits,
                self.settings.media_relay,
                parse_domain_policies(self.settings.media_relay_domains),
                health=HealthStore(self.store),
                fraud=self.fraud,
                strangers=(
                    self.settings.call_limit_per_source,
                    self.settings.call_limit_per_source_cps,
                ),
                subscribers=(
                    self.settings.call_limit_per_subscriber,
                    self.settings.call_limit_per_subscriber_cps,
                ),
            ),
            limits_router(self.cache, self.limits),
        )

    async def start(self) -> None:
        await self.bus.declare_queue(COMMANDS_QUEUE)
        await self.cache.start()
        await self.health.start()
        await self.bus.consume(COMMANDS_QUEUE, CommandHandler(self.writer))
        await self.bus.consume(
            FRAUD_CALLS_QUEUE, CallEnds(self.fraud, self.bus), events=[FRAUD_CALL_ENDS]
        )
        self.log.info("routing ready at table version %d", self.cache.version)

    async def stop(self) -> None:
        await self.health.stop()
        await self.cache.stop()

    async def _table_ready(self) -> str | None:
        return None if self.cache.ready else "routing table not loaded yet"
