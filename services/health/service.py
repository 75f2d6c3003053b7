"""The gateway-health service: OPTIONS probing, target states, dispatcher sets.

Every instance keeps the target list current and serves the API; the one
holding the prober's lease (:mod:`services.health.lease`) also probes. The
others check the lease every third of its TTL and take over when it lapses.
Gateways given by name are resolved every `RESOLVE_INTERVAL` (from the DNS
cache: DNS itself is asked once a record's TTL has run out), and their DNS
targets are the targets probed (:mod:`services.health.targets`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from fastapi import APIRouter
from pydantic import ValidationError
from redis.exceptions import RedisError

from services.health.api.dispatcher import dispatcher_router
from services.health.api.targets import targets_router
from services.health.capture import ProbeCapture
from services.health.catalog import Catalog
from services.health.lease import Lease
from services.health.operator import Operator
from services.health.prober import OptionsProber
from services.health.rounds import ProbeRounds
from services.health.settings import HealthSettings
from shared.background import cancel_and_wait
from shared.bus import Envelope
from shared.contracts.edge import DestinationFailed, GatewayFailed
from shared.contracts.health import DispatcherSetDeleted, DispatcherSetUpserted, TargetOverridden
from shared.contracts.routing import TableChanged, TableReplaced
from shared.dns.resolver import DnsResolver
from shared.health.policy import ProbePolicy
from shared.health.store import HealthStore
from shared.hep.mirror import mirror_of
from shared.hep.settings import CaptureSettings
from shared.routing_table.store import RoutingStore
from shared.service import Runtime, Service
from shared.settings import ListenAddress, split_host_port
from shared.sip.transport.tls_context import TlsFiles
from shared.sip.transport.tls_peers import GatewayProfiles

EVENTS = (
    "routing.#",
    "health.dispatcher.*",
    TargetOverridden.routing_key,
    GatewayFailed.routing_key,
    DestinationFailed.routing_key,
)
RESOLVE_INTERVAL = 5.0
"""Seconds between two reads of the gateways' names: a DNS change is probed within it."""
EDGE_FAILURES: dict[str, type[GatewayFailed] | type[DestinationFailed]] = {
    GatewayFailed.routing_key: GatewayFailed,
    DestinationFailed.routing_key: DestinationFailed,
}


class HealthService(Service):
    name = "health"

    def __init__(self, runtime: Runtime, health_settings: HealthSettings | None = None) -> None:
        super().__init__(runtime)
        config = self.config = health_settings or HealthSettings()
        self.health_store = HealthStore(self.store)
        self.catalog = Catalog(RoutingStore(self.store))
        self.defaults = ProbePolicy(
            mode=config.probe_mode,
            interval=config.probe_interval,
            failures_to_down=config.failures_to_down,
            successes_to_up=config.successes_to_up,
            accepted_codes=config.accepted_codes,
        )
        self.operator = Operator(self.catalog, self.health_store, self.bus, self.defaults)
        self.lease = Lease(
            self.store, self.health_store.lease_key, self.settings.instance, config.lease_ttl
        )
        self.capture_settings = CaptureSettings()
        """``CALLMESH_HEP_*``: where the probes are mirrored (read now, so a bad value stops
        the start)."""
        self.rounds: ProbeRounds | None = None
        self.dns = DnsResolver.from_settings(self.settings)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    @property
    def probing(self) -> bool:
        """Whether this instance is the prober now."""
        return self.rounds is not None

    def routers(self) -> Sequence[APIRouter]:
        return (
            targets_router(self.operator, self.config.probe_timeout),
            dispatcher_router(self.health_store, self.catalog, self.bus),
        )

    async def start(self) -> None:
        await self.bus.subscribe(EVENTS, self._on_event)
        self.bus.on_reconnect(self._resync)
        await self._resync()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._elect()),
            loop.create_task(self._resync_forever()),
            loop.create_task(self._resolve_forever()),
        ]
        self.log.info("health ready with %d targets", len(self.catalog.targets))

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks.clear()
        if self.probing:
            await self.lease.release()

    # -- the target list -----------------------------------------------------

    async def _resync(self) -> None:
        """Reload gateways and sets from Redis: at start, after a reconnect, periodically."""
        await self.catalog.load(await self.health_store.dispatcher_sets())
        self._targets_changed()

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once on stop.

        The loops end on ``_stopping`` rather than trusting cancellation alone:
        a cancellation landing inside a Redis call can be swallowed by the client.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _resync_forever(self) -> None:
        while True:
            await self._pause(self.config.resync_interval)
            if self._stopping.is_set():
                return
            try:
                await self._resync()
            except (RedisError, OSError) as error:
                self.log.warning("target resync failed: %s", error)

    async def _resolve_names(self) -> None:
        """Each gateway or destination given by name to its DNS targets now; the prober told
        of changes."""
        names = self.catalog.names()
        found = await asyncio.gather(*(self.dns.resolve(spec) for spec in names.values()))
        changed = False
        for owner, located in zip(names, found, strict=True):
            if self.catalog.set_resolved(owner, located.targets):
                changed = True
                labels = ", ".join(t.label for t in located.targets) or located.reason
                what = "destination" if owner.startswith("ds:") else "gateway"
                self.log.info("%s %s resolves to %s", what, owner, labels)
        if changed:
            self._targets_changed()

    async def _resolve_forever(self) -> None:
        while not self._stopping.is_set():
            await self._resolve_names()
            await self._pause(RESOLVE_INTERVAL)

    def _targets_changed(self) -> None:
        if self.rounds is not None:
            self.rounds.targets_changed()

    async def _on_event(self, envelope: Envelope) -> None:
        kind = envelope.type
        try:
            if kind in EDGE_FAILURES:
                if self.rounds is not None:
                    await self.rounds.edge_failed(envelope.payload(EDGE_FAILURES[kind]))
            elif kind == TargetOverridden.routing_key:
                self._targets_changed()
            elif kind == DispatcherSetUpserted.routing_key:
                event = envelope.payload(DispatcherSetUpserted)
                self.catalog.put_set(event.set_id, event.set)
                self._targets_changed()
            elif kind == DispatcherSetDeleted.routing_key:
                self.catalog.delete_set(envelope.payload(DispatcherSetDeleted).set_id)
                self._targets_changed()
            elif (
                kind.startswith("routing.")
                and kind != TableReplaced.routing_key
                and self.catalog.apply_routing(envelope.payload(TableChanged))
            ):
                self._targets_changed()
        except ValidationError as error:
            self.log.warning(
                "ignored a malformed %s event from %s: %s",
                kind,
                envelope.stream,
                error.errors(include_url=False, include_input=False)[0]["msg"],
            )

    # -- the prober's lease --------------------------------------------------

    async def _elect(self) -> None:
        period = self.config.lease_ttl / 3
        task: asyncio.Task[None] | None = None
        try:
            while not self._stopping.is_set():
                try:
                    held = await self.lease.hold()
                except (RedisError, OSError) as error:
                    self.log.warning("cannot reach the prober's lease: %s", error)
                    held = False
                if task is not None and task.done():
                    self._report_end(task)
                    task = None
                if held and task is None:
                    task = asyncio.get_running_loop().create_task(self._probe_rounds())
                elif not held and task is not None:
                    await self._end_rounds(task)
                    task = None
                await self._pause(period)
        finally:
            if task is not None:
                await self._end_rounds(task)

    async def _end_rounds(self, task: asyncio.Task[None]) -> None:
        if self.rounds is not None:
            self.rounds.stop()
        await cancel_and_wait(task)

    async def _probe_rounds(self) -> None:
        config = self.config
        host, port = split_host_port(config.probe_source)
        hep = mirror_of(self.capture_settings)
        prober = OptionsProber(
            ListenAddress("udp", host, port),
            config.probe_timeout,
            tls=TlsFiles.of(self.settings),
            profiles=GatewayProfiles(self.catalog.tls_gateways, self.catalog.tls_name),
            capture=ProbeCapture(hep) if hep is not None else None,
        )
        self.rounds = ProbeRounds(
            catalog=self.catalog,
            store=self.health_store,
            bus=self.bus,
            prober=prober,
            defaults=self.defaults,
            owner=self.settings.instance,
            log=self.log,
        )
        self.log.info("this instance is now the prober")
        try:
            await self.rounds.run()
        finally:
            self.rounds = None
            self.log.info("this instance stopped probing")

    def _report_end(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            self.log.warning("probing stopped: %s: %s", type(error).__name__, error)
