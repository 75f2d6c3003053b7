"""The edge service: this process's edge (`runtime.startup`), its worker pool and its HTTP API."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from fastapi import APIRouter

from services.edge.api import allowlist_router, blocks_router, calls_router, control_router
from services.edge.api.accounting import Accounting, CallControlSettings
from services.edge.api.calls import Gathered
from services.edge.api.ending import CallEnder
from services.edge.api.transferring import CallTransferrer
from services.edge.proxy.interfaces import Interfaces
from services.edge.runtime.fraud_hangups import FraudHangups
from services.edge.runtime.gc_tuning import tune_for_proxy
from services.edge.runtime.hangups import Hangups
from services.edge.runtime.journal import outbox_root
from services.edge.runtime.orphans import adopt_orphans
from services.edge.runtime.pool import WorkerPool
from services.edge.runtime.siblings import HANGUP_WITHIN, SiblingAnswer, Siblings, advertised_url
from services.edge.runtime.startup import RunningEdge, start_edge
from shared.background import cancel_and_wait
from shared.contracts.fraud import FRAUD_HANGUPS_QUEUE, FRAUD_THRESHOLDS
from shared.extensions import STATE
from shared.hep.settings import CaptureSettings
from shared.protection import ProtectionStore
from shared.service import Service


class EdgeService(Service):
    name = "edge"
    fraud_hangups: FraudHangups | None = None
    """The consumer of the fraud blocks, with ``CALLMESH_FRAUD_HANGUP`` on."""
    adopting: asyncio.Task[int] | None = None
    """Publishing what the outbox slots no worker holds kept (`runtime.orphans`)."""

    async def start(self) -> None:
        self.workers = WorkerPool(self.settings)
        self.edge = await start_edge(
            self.settings, self.bus, self.store, group=self.workers.group(0)
        )
        self.runtime.readiness.append(("routing-cache", self._cache_ready))
        await self.workers.start()
        root = outbox_root(self.settings)
        if root is not None:  # every worker holds its slot now: the others are orphans
            self.adopting = asyncio.create_task(
                adopt_orphans(
                    root,
                    self.bus,
                    batch=self.settings.edge_event_batch,
                    max_bytes=self.settings.edge_outbox_max_mb << 20,
                )
            )
        if self.workers.shared:
            self.runtime.metrics_sources.append(self.workers.metrics_source())
            self.runtime.metrics_sources.append(self.workers.hep_metrics_source())
        tune_for_proxy()
        capture = CaptureSettings()
        token = self.settings.api_token
        self.siblings = Siblings(
            self.store,
            self.settings.instance,
            advertised_url(self.settings, capture.http_advertise),
            token.get_secret_value() if token is not None else None,
            capture.trace_peer_timeout,
        )
        await self.siblings.start()
        self.fraud_hangups = await self._hang_up_blocked_accounts()
        addresses = ", ".join(
            f"{b.listener.transport}:{b.listener.host}:{b.listener.port}"
            for b in self.edge.sockets.bound
        )
        self.log.info("edge ready on %s (%d workers, %s)", addresses, self.workers.count, STATE)

    def routers(self) -> Sequence[APIRouter]:
        protection = ProtectionStore(self.store)
        return (
            blocks_router(protection, self.bus),
            allowlist_router(protection, self.bus),
            calls_router(self._trace),
            control_router(
                self._accounting(CallControlSettings()), self._ender(), self._transferrer()
            ),
        )

    def _ender(self) -> CallEnder:
        """How this edge ends a call, for the API's hang-ups and the fraud blocks'."""
        return CallEnder(
            self._hangups, self.settings.instance, self._forward_hangup, self._hang_up_b2bua
        )

    def _transferrer(self) -> CallTransferrer:
        """How this edge transfers a B2BUA call (`api.transferring`)."""
        return CallTransferrer(self.settings.instance, self._transfer_b2bua, self._forward_transfer)

    async def _transfer_b2bua(self, call_id: str, tag: str, to: str) -> tuple[str, str]:
        """The B2BUA call's transfer begun by the engine of the worker holding it
        (`B2buaRunner.transfer`, asked over `runtime.worker_control` if not this process)."""
        edge: RunningEdge | None = getattr(self, "edge", None)
        if edge is None:
            return "elsewhere", ""
        return await edge.control.transfer(call_id, tag, to)

    async def _forward_transfer(self, edge: str, call_id: str, to: str) -> SiblingAnswer | None:
        siblings: Siblings | None = getattr(self, "siblings", None)
        if siblings is None:
            return None
        return await siblings.transfer(edge, call_id, to, HANGUP_WITHIN)

    def _accounting(self, control: CallControlSettings) -> Accounting | None:
        """The accounting service's API, asked by call control; None when it is off."""
        url = control.edge_accounting_url or self._colocated_accounting()
        if not url:
            return None
        token = self.settings.api_token
        return Accounting(
            url,
            token.get_secret_value() if token is not None else None,
            control.edge_accounting_timeout,
        )

    async def _hang_up_blocked_accounts(self) -> FraudHangups | None:
        """With ``CALLMESH_FRAUD_HANGUP``, take this edge's share of the fraud blocks."""
        control = CallControlSettings()
        if not control.fraud_hangup:
            return None
        accounting = self._accounting(control)
        if accounting is None:
            self.log.warning(
                "CALLMESH_FRAUD_HANGUP is on but call control is off (set "
                "CALLMESH_EDGE_ACCOUNTING_URL): blocked accounts' live calls are not hung up"
            )
            return None
        handler = FraudHangups(accounting, self._ender())
        await self.bus.consume(FRAUD_HANGUPS_QUEUE, handler, prefetch=4, events=[FRAUD_THRESHOLDS])
        return handler

    def _colocated_accounting(self) -> str:
        """This process's own API when it runs the accounting service too (the all-in-one):
        call control works there without ``CALLMESH_EDGE_ACCOUNTING_URL``; else empty."""
        if "accounting" not in self.runtime.colocated:
            return ""
        host, port = self.settings.http_address
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _hangups(self) -> tuple[Hangups, Interfaces] | None:
        """This process's hang-up sender and interfaces (None before its sockets are open)."""
        edge = getattr(self, "edge", None)
        if edge is None or edge.driver.hangups is None:
            return None
        return edge.driver.hangups, edge.driver.proxy.interfaces

    async def _hang_up_b2bua(self, call_id: str, tag: str) -> bool:
        """The B2BUA call `call_id` (the edge's `tag` on the caller's leg) ended by the engine
        of the worker its Call-ID hashes to (this process's, or asked over
        `runtime.worker_control`): held there, or adopted from Redis (False: neither)."""
        edge: RunningEdge | None = getattr(self, "edge", None)
        return edge is not None and await edge.control.hang_up(call_id, tag)

    async def _forward_hangup(self, edge: str, call_id: str) -> SiblingAnswer | None:
        """The hang-up of `call_id` done by `edge` (the one that answered it), if it is up."""
        siblings: Siblings | None = getattr(self, "siblings", None)
        if siblings is None:
            return None
        return await siblings.hang_up(edge, call_id, HANGUP_WITHIN)

    async def _trace(self, call_id: str, cluster: bool) -> Gathered:
        """The call's kept messages: this process's ring, every other worker's, then (if
        `cluster`) every other edge's, each message naming its edge."""
        ring = self.edge.trace
        own = [entry.as_json() for entry in ring.of_call(call_id)] if ring is not None else []
        own += await self.workers.traces(call_id)
        for message in own:
            message["edge"] = self.settings.instance
        if not cluster:
            return Gathered(own)
        siblings = await self.siblings.traces(call_id)
        for sibling in siblings:
            own += [dict(message, edge=sibling.edge) for message in sibling.messages]
        return Gathered(own, sorted(s.edge for s in siblings if s.failure))

    async def stop(self) -> None:
        await cancel_and_wait(self.adopting)
        if self.fraud_hangups is not None:
            await self.fraud_hangups.stop()
        await self.siblings.stop()
        await self.workers.stop()
        await self.edge.stop()

    async def _cache_ready(self) -> str | None:
        return None if self.edge.cache.ready else "routing table not loaded yet"
