"""The edge service: SIP sockets, the routing cache and the proxy core, wired together."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter

from services.edge import metrics
from services.edge.adapter import ProxyDriver
from services.edge.affinity import CallAffinity, WorkerGroup
from services.edge.api import allowlist_router, blocks_router
from services.edge.callers import CallerProfiles
from services.edge.dispatch import ActiveCalls, DispatchSets, SetSelector
from services.edge.gc_tuning import tune_for_proxy
from services.edge.health_feed import HealthFeed
from services.edge.interfaces import Interface, Interfaces
from services.edge.location import Directory
from services.edge.location.feed import LocationFeed
from services.edge.overload import LoadShedder, OverloadSettings
from services.edge.policy import EdgePolicies
from services.edge.protection_feed import ProtectionFeed
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.flows import FlowTokens
from services.edge.proxy.routes import NumberRouter
from services.edge.proxy.subscribers import Subscribers
from services.edge.record_route_keys import record_route_keyring
from services.edge.sockets import BoundSocket, EdgeSockets
from services.edge.trust import SourceTrust
from services.edge.workers import WorkerPool
from shared.bus import Bus
from shared.protection import ProtectionStore
from shared.registrar.location import shared_secret
from shared.registrar.nonce_counts import NonceCounts
from shared.routing_table.cache import RoutingCache
from shared.service import Service
from shared.settings import Settings, split_host_port
from shared.sip import message as message_module
from shared.sip.auth.nonces import NonceKeeper
from shared.sip.transport.base import Listener, limits_of
from shared.sip.transport.destination import Destination
from shared.store import Store


class EdgeService(Service):
    name = "edge"

    async def start(self) -> None:
        self.cache = RoutingCache(self.store, self.bus)
        await self.cache.start()
        self.runtime.readiness.append(("routing-cache", self._cache_ready))
        metrics.ROUTING_VERSION.set_function(lambda: self.cache.version)
        self.health_feed = HealthFeed(self.store, self.bus, self.cache.health)
        await self.health_feed.start()
        self.workers = WorkerPool(self.settings)
        self.edge = await start_edge(
            self.settings, self.cache, self.bus, self.store, group=self.workers.group(0),
            sets=self.health_feed.sets,
        )  # fmt: skip
        await self.workers.start()
        if self.workers.shared:
            self.runtime.metrics_sources.append(self.workers.metrics_source())
        tune_for_proxy()
        addresses = ", ".join(f"{b.listener.transport}:{b.listener.host}:{b.listener.port}"
                              for b in self.edge.sockets.bound)  # fmt: skip
        self.log.info("edge ready on %s (%d workers, %s)", addresses, self.workers.count,
                      _build())  # fmt: skip

    def routers(self) -> Sequence[APIRouter]:
        protection = ProtectionStore(self.store)
        return (blocks_router(protection, self.bus), allowlist_router(protection, self.bus))

    async def stop(self) -> None:
        await self.workers.stop()
        await self.edge.stop()
        await self.health_feed.stop()
        await self.cache.stop()

    async def _cache_ready(self) -> str | None:
        return None if self.cache.ready else "routing table not loaded yet"


class RunningEdge:
    """One worker's proxy on its sockets."""

    def __init__(self, driver: ProxyDriver, sockets: EdgeSockets) -> None:
        self.driver = driver
        self.sockets = sockets

    async def stop(self) -> None:
        await self.sockets.close()
        await self.driver.stop()


async def start_edge(
    settings: Settings, cache: RoutingCache, bus: Bus, store: Store, *,
    group: WorkerGroup | None, sets: DispatchSets | None = None,
) -> RunningEdge:  # fmt: skip
    """Open the sockets of `settings.sip_addresses` and serve SIP on them.

    `group`: this worker's place among several sharing the ports (none: the only one).
    `sets`: the dispatcher sets to route ``@set`` targets to (none: those are skipped).
    """
    secret = await shared_secret(store)
    signer = RecordRouteSigner(await record_route_keyring(settings, store))
    directory = Directory()
    feed = LocationFeed(directory, store, bus, NonceCounts(store, settings.registrar_nonce_ttl))
    await feed.start()
    trusted = SourceTrust(settings.trusted, cache)
    dialogs = DialogGate(signer, trusted)
    subscribers = Subscribers(
        directory,
        FlowTokens(secret),
        NonceKeeper(secret, settings.registrar_nonce_ttl),
        trusted,
        settings.digest_offer,
    )
    sockets = EdgeSockets(_unset_handler, limits_of(settings))
    await sockets.open(list(settings.sip_addresses), shared=group is not None)
    timers = ProxyTimers(
        fr=settings.fr_timeout,
        fr_inv=settings.fr_inv_timeout,
        t1=settings.sip_t1,
        t2=settings.sip_t2,
        t4=settings.sip_t4,
    )
    interfaces = interfaces_of(sockets.bound, settings.sip_advertise)
    policies = EdgePolicies.from_settings(settings, interfaces, cache, trusted)
    calls = ActiveCalls()
    selector = None if sets is None else SetSelector(sets, calls)
    router = NumberRouter(cache, CallerProfiles(settings.caller_profiles), sets=selector)
    shedder = LoadShedder(
        OverloadSettings(
            lag_threshold=settings.overload_lag_ms / 1000,
            retry_after=settings.overload_retry_after,
        )
    )
    call_events = CallEvents(settings.instance) if settings.call_events else None
    proxy = Proxy(
        interfaces, router, timers, policies=policies, subscribers=subscribers, calls=calls,
        shedder=shedder, udp_mtu=settings.udp_mtu, dialogs=dialogs, call_events=call_events,
    )  # fmt: skip
    protection = ProtectionFeed(
        store, bus, policies.guard, subscribers.blocks, settings=settings.auth_failures,
        edge=settings.instance,
    )  # fmt: skip
    await protection.start()
    driver = ProxyDriver(proxy, bus, feed=feed, instance=settings.instance, protection=protection)
    sockets.on_message = driver.on_message
    sockets.tcp.admit = driver.admit_connection
    if group is not None:
        sockets.affinity = CallAffinity(
            group, sockets.shared_udp, driver.on_message, sockets.private_udp
        )
        await sockets.affinity.start()
    driver.start(sockets)
    return RunningEdge(driver, sockets)


def _build() -> str:
    """Whether `make fast` compiled the SIP core: it changes CPU per call about twofold."""
    compiled = not (message_module.__file__ or "").endswith(".py")
    return "SIP core compiled by mypyc" if compiled else "pure-Python SIP core"


def _unset_handler(_data: bytes, _source: Destination, _listener: Listener) -> None:
    """Drops what arrives in the instant between binding and the proxy taking over."""


def parse_advertise(text: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``v6`` or ``[v6]:port`` → (host without brackets, port or None)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else None
    if text.count(":") == 1:
        host, port = split_host_port(text)
        return host, port
    return text, None


def interfaces_of(bound: list[BoundSocket], advertise: str | None) -> Interfaces:
    """Our interfaces as peers must see them: the advertised host (and port) when set.

    An advertised port is a NAT port forward to the shared port, so it
    replaces the private Via port too (several workers behind one forward
    would need one forward each: not supported).
    """
    host, port = parse_advertise(advertise) if advertise else (None, None)
    interfaces = []
    for socket_ in bound:
        listener = socket_.listener
        via_port = socket_.private.port if socket_.private else listener.port
        interfaces.append(
            Interface(
                listener.transport,
                host or listener.host,
                port or listener.port,
                port or via_port,
            )
        )
    return Interfaces(interfaces, also_ours=[(b.listener.host, b.listener.port) for b in bound])
