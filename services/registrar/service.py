"""The registrar service: REGISTERs from every edge, subscribers and registrations over HTTP.

Stateless per instance: bindings, subscribers and the nonce secret live in
Redis, so any number of instances share the ``registrar.register`` and
``registrar.unreachable`` queues and each sweeps expiries (each expiry is
claimed once).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter

from services.registrar.api.registrations import registrations_router
from services.registrar.api.subscribers import subscribers_router
from services.registrar.bindings import BindingStore
from services.registrar.handler import RegisterHandler
from services.registrar.outbox import EventOutbox
from services.registrar.register import ExpiryPolicy
from services.registrar.subscribers import SubscriberStore
from services.registrar.sweeper import ExpirySweeper
from services.registrar.unreachable import UnreachableHandler
from shared.contracts.registrar import REGISTER_QUEUE, UNREACHABLE_QUEUE
from shared.registrar.location import shared_secret
from shared.service import Runtime, Service
from shared.settings import Settings
from shared.sip.auth.nonces import NonceKeeper


class RegistrarService(Service):
    name = "registrar"

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.bindings = BindingStore(self.store)
        self.subscribers = SubscriberStore(self.store)
        self.outbox = EventOutbox(self.bus, self.log)
        self.sweeper = ExpirySweeper(self.bindings, self.outbox, self.log)

    def routers(self) -> Sequence[APIRouter]:
        return (
            subscribers_router(self.subscribers, self.bus),
            registrations_router(self.bindings, self.bus),
        )

    async def start(self) -> None:
        settings = self.settings
        nonces = NonceKeeper(await shared_secret(self.store), settings.registrar_nonce_ttl)
        handler = RegisterHandler(
            self.store,
            self.outbox,
            nonces,
            expiry_policy(settings),
            log=self.log,
            offer=settings.digest_offer,
        )
        self.outbox.start()
        await self.bus.declare_queue(REGISTER_QUEUE)
        for _ in range(settings.registrar_workers):
            await self.bus.consume(REGISTER_QUEUE, handler, prefetch=8)
        await self.bus.consume(
            UNREACHABLE_QUEUE, UnreachableHandler(self.bindings, self.outbox, self.log), prefetch=8
        )
        self.sweeper.start()
        self.log.info("registrar ready", extra={"workers": settings.registrar_workers})

    async def stop(self) -> None:
        await self.sweeper.stop()
        await self.outbox.stop()


def expiry_policy(settings: Settings) -> ExpiryPolicy:
    return ExpiryPolicy(
        min_expires=settings.registrar_min_expires,
        max_expires=settings.registrar_max_expires,
        default_expires=settings.registrar_default_expires,
        max_contacts=settings.registrar_max_contacts,
    )
