"""The edge's protection API as an edge process serves it (token ``t0k``), in this process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from services.edge.api import allowlist_router, blocks_router
from shared.api.app import create_app
from shared.bus.amqp import AmqpBus
from shared.protection import ProtectionStore
from shared.store import Store
from tests.conftest import RABBITMQ_URL

TOKEN = "t0k"


@asynccontextmanager
async def protection_api(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    bus = AmqpBus(RABBITMQ_URL, store.namespace, "edge", "api")
    await bus.start()
    protection = ProtectionStore(store)
    routers = [blocks_router(protection, bus), allowlist_router(protection, bus)]
    app = create_app("edge", routers, [], TOKEN)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    try:
        yield client
    finally:
        await client.aclose()
        await bus.close()
