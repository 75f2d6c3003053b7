"""The edge service: this process's edge (`runtime.startup`), its worker pool and its HTTP API."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter

from services.edge.api import allowlist_router, blocks_router
from services.edge.runtime.gc_tuning import tune_for_proxy
from services.edge.runtime.pool import WorkerPool
from services.edge.runtime.startup import start_edge
from shared.extensions import STATE
from shared.protection import ProtectionStore
from shared.service import Service


class EdgeService(Service):
    name = "edge"

    async def start(self) -> None:
        self.workers = WorkerPool(self.settings)
        self.edge = await start_edge(
            self.settings, self.bus, self.store, group=self.workers.group(0)
        )
        self.runtime.readiness.append(("routing-cache", self._cache_ready))
        await self.workers.start()
        if self.workers.shared:
            self.runtime.metrics_sources.append(self.workers.metrics_source())
        tune_for_proxy()
        addresses = ", ".join(
            f"{b.listener.transport}:{b.listener.host}:{b.listener.port}"
            for b in self.edge.sockets.bound
        )
        self.log.info("edge ready on %s (%d workers, %s)", addresses, self.workers.count, STATE)

    def routers(self) -> Sequence[APIRouter]:
        protection = ProtectionStore(self.store)
        return (blocks_router(protection, self.bus), allowlist_router(protection, self.bus))

    async def stop(self) -> None:
        await self.workers.stop()
        await self.edge.stop()

    async def _cache_ready(self) -> str | None:
        return None if self.edge.cache.ready else "routing table not loaded yet"
