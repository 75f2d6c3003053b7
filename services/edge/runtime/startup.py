"""One edge process's start-up, assembled once: the service's process and each extra worker use it.

What a process serves SIP with: the routing cache and the health feed (gateway
states, dispatcher sets), the registrar's location cache and its feed, the
protection feed, the proxy core with its policies, the keepalives of the NAT'd
bindings it holds, and the sockets it serves on.
Only the process around it differs (the service adds the worker pool and the
HTTP API, a worker its metrics socket).
"""

from __future__ import annotations

import asyncio
import functools

from services.edge import metrics
from services.edge.b2bua.session_timer import TimerPolicy
from services.edge.destinations import ActiveCalls, DispatchSets, SetSelector
from services.edge.feeds.health import HealthFeed
from services.edge.feeds.location import LocationFeed
from services.edge.feeds.protection import ProtectionFeed
from services.edge.keepalive.schedule import KeepaliveSchedule
from services.edge.location import Directory
from services.edge.policy import EdgePolicies
from services.edge.policy.callers import CallerProfiles
from services.edge.policy.overload import LoadShedder, OverloadSettings
from services.edge.policy.routing import b2bua_carriage
from services.edge.policy.trust import SourceTrust
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.dialogs import DialogGate, RecordRouteSigner
from services.edge.proxy.flows import FlowTokens
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.media import MediaSettings
from services.edge.proxy.routes import NumberRouter
from services.edge.proxy.subscribers import Subscribers
from services.edge.runtime.affinity import CallAffinity, WorkerGroup
from services.edge.runtime.b2bua_media import relay_media
from services.edge.runtime.b2bua_runner import B2buaRunner
from services.edge.runtime.b2bua_state import PairStates, PairWriter
from services.edge.runtime.capture import capture_of, watch_events
from services.edge.runtime.driver import ProxyDriver
from services.edge.runtime.fraud import FraudRunner
from services.edge.runtime.journal import open_outbox
from services.edge.runtime.keepalives import KeepaliveRunner
from services.edge.runtime.limits import LimitsRunner
from services.edge.runtime.media import MediaRunner
from services.edge.runtime.media_expiry import MediaExpiry
from services.edge.runtime.name_warmer import NameWarmer, gateway_addresses
from services.edge.runtime.record_route_keys import record_route_keyring
from services.edge.runtime.shared_counts import Runner, start_shared_counts
from services.edge.runtime.sockets import BoundSocket, EdgeSockets
from services.edge.runtime.steering import join
from services.edge.runtime.trace_ring import TraceRing
from services.edge.runtime.worker_control import WorkerControl
from shared.bus import Bus
from shared.contracts.edge import MEDIA_EXPIRED_EVENTS, MEDIA_EXPIRED_QUEUE
from shared.dns import Names
from shared.dns.resolver import DnsResolver
from shared.fraud.store import FraudStore
from shared.limits.store import SharedLimits
from shared.registrar.location import shared_secret
from shared.registrar.nonce_counts import NonceCounts
from shared.routing_table.cache import RoutingCache
from shared.routing_table.media import parse_domain_policies
from shared.settings import Settings, split_host_port
from shared.sip.auth.nonces import NonceKeeper
from shared.sip.transport.base import Listener, limits_of, tls_limits_of
from shared.sip.transport.destination import Destination
from shared.sip.transport.tls_context import TlsFiles
from shared.sip.transport.tls_peers import GatewayProfiles
from shared.sip.transport.ws_policy import WebSocketPolicy
from shared.store import Store


class RunningEdge:
    """One process's edge: its routing cache and feeds, and the proxy on its sockets."""

    def __init__(
        self,
        cache: RoutingCache,
        health: HealthFeed,
        driver: ProxyDriver,
        sockets: EdgeSockets,
        warmer: NameWarmer,
        *,
        counters: list[Runner],
        control: WorkerControl,
    ) -> None:
        self.cache = cache
        self.counters = counters
        self.health = health
        self.driver = driver
        self.sockets = sockets
        self.warmer = warmer
        self.control = control
        """Call control of a B2BUA call whichever worker holds it (`runtime.worker_control`)."""

    @property
    def trace(self) -> TraceRing | None:
        """This worker's ring of recent messages (None: `CALLMESH_TRACE_RING` is 0)."""
        capture = self.sockets.capture
        return capture.ring if capture is not None else None

    async def stop(self) -> None:
        await self.warmer.stop()
        await self.control.close()
        await self.sockets.close()
        capture = self.sockets.capture
        if capture is not None and capture.hep is not None:
            await capture.hep.sender.stop()
        if self.driver.round_trips.limits is not None:
            await self.driver.round_trips.limits.stop()
        for counter in self.counters:
            await counter.stop()
        await self.driver.stop()
        await self.health.stop()
        await self.cache.stop()


async def start_edge(
    settings: Settings, bus: Bus, store: Store, *, group: WorkerGroup | None
) -> RunningEdge:
    """Load the routing table and the health states, then serve SIP on `settings.sip_addresses`.

    `group`: this worker's place among several sharing the ports (none: the only one).
    """
    cache = RoutingCache(store, bus)
    await cache.start()
    metrics.ROUTING_VERSION.read = lambda: cache.version
    health = HealthFeed(store, bus, cache.health)
    await health.start()
    driver, sockets = await _serve_proxy(settings, cache, bus, store, group=group, sets=health.sets)
    warmer = NameWarmer(gateway_addresses(cache), driver.dns)  # names cached before calls
    warmer.start()
    policies = driver.proxy.policies
    flood = policies.guard.flood if isinstance(policies, EdgePolicies) else None
    counters = start_shared_counts(settings, store, flood, driver.proxy.calls, health.sets)
    control = WorkerControl(group, driver.hang_up_b2bua, driver.transfer_b2bua)
    if sockets.affinity is not None:  # a sibling's control frames, and ours to them
        control.send, sockets.affinity.control = sockets.affinity.send_control, control.receive
    return RunningEdge(cache, health, driver, sockets, warmer, counters=counters, control=control)


async def _serve_proxy(
    settings: Settings,
    cache: RoutingCache,
    bus: Bus,
    store: Store,
    *,
    group: WorkerGroup | None,
    sets: DispatchSets,
) -> tuple[ProxyDriver, EdgeSockets]:
    """The proxy core with its policies and feeds, driven on freshly opened sockets."""
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
    dns = DnsResolver.from_settings(settings, asyncio.get_running_loop())
    names = Names(dns.cache, hold=settings.dns_target_hold)
    sockets = EdgeSockets(
        _unset_handler,
        limits_of(settings),
        tls=TlsFiles.of(settings),
        tls_limits=tls_limits_of(settings),
        tls_profiles=GatewayProfiles(
            lambda: [(gateway.address, gateway.tls) for gateway in cache.index.gateways.values()],
            names.tls_name,
        ),
        websocket=WebSocketPolicy.of(settings),
    )
    if group is not None:
        sockets.number_connections(group.index)
    await sockets.open(list(settings.sip_addresses), shared=group is not None)
    sockets.capture = capture_of(settings)
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
    router = NumberRouter(
        cache,
        CallerProfiles(settings.caller_profiles, cache),
        sets=SetSelector(sets, calls),
        names=names,
        health=cache.health.state,
        b2bua=b2bua_carriage(cache, sets.mode),
    )
    shedder = LoadShedder(
        OverloadSettings(
            lag_threshold=settings.overload_lag_ms / 1000,
            queue_threshold=settings.overload_queue_ms / 1000,
            retry_after=settings.overload_retry_after,
            backlog_high=settings.overload_event_backlog_percent / 100,
        )
    )
    media = MediaRunner.from_settings(settings)
    proxy = Proxy(
        interfaces,
        router,
        timers,
        policies=policies,
        subscribers=subscribers,
        calls=calls,
        shedder=shedder,
        udp_mtu=settings.udp_mtu,
        dialogs=dialogs,
        call_events=CallEvents(settings.instance) if settings.call_events else None,
        media=None if media is None else media_settings(settings),
    )
    protection = ProtectionFeed(
        store,
        bus,
        policies.guard,
        subscribers.blocks,
        settings=settings.auth_failures,
        edge=settings.instance,
    )
    await protection.start()
    keepalives = KeepaliveRunner(
        KeepaliveSchedule(settings.nat_keepalive_interval, settings.nat_keepalive_timeout),
        bus,
        sockets,
        interfaces,
        settings.instance,
        store=store,
    )
    driver = ProxyDriver(
        proxy,
        bus,
        feed=feed,
        instance=settings.instance,
        protection=protection,
        keepalives=keepalives,
        dns=dns,
        media=media,
        event_batch=settings.edge_event_batch,
        event_linger=settings.edge_event_linger_ms / 1000,
        outbox=open_outbox(settings, group.index if group is not None else 0),
        fsync_interval=settings.edge_outbox_fsync_interval,
    )
    states = PairStates(store, settings.call_limit_max_call_duration)  # a call's longest life
    session_timers = TimerPolicy(
        settings.b2bua_session_expires, settings.b2bua_min_se, settings.b2bua_session_timer_scale
    )
    driver.b2bua = B2buaRunner(proxy, group, PairWriter(states), session_timers)
    if media is not None:
        required, retry_after = settings.media_relay_required, settings.overload_retry_after
        relay_media(driver.b2bua, required, media.run, driver._deliver, retry_after)
    driver.publisher.recover()  # a predecessor's unconfirmed call events, before any call
    publisher = driver.publisher
    metrics.OUTBOX_UNSETTLED.read = lambda: publisher.unsettled
    watch_events(sockets.capture, driver.publisher, [bound.listener for bound in sockets.bound])
    driver.round_trips.limits = LimitsRunner(
        SharedLimits(store, round(settings.call_limit_lease * 1000)),
        policies.leases,
        driver.publisher,
        settings.instance,
        asyncio.get_running_loop(),
    )
    driver.round_trips.limits.start()
    driver.round_trips.fraud = FraudRunner(
        FraudStore.from_settings(store, settings), driver.publisher, settings.instance
    )
    sockets.on_message = driver.on_message
    for table in sockets.streams.values():
        table.admit = driver.admit_connection
    if group is not None:
        sockets.affinity = CallAffinity(
            group, sockets.shared_udp, sockets.deliver, sockets.private_udp, sockets.write_handed
        )
        await sockets.affinity.start()
        driver.round_trips.flow_instance = functools.partial(group.flow_instance, settings.instance)
    driver.start(sockets)
    if group is not None:
        join(group.steering, group.index, group.count, sockets.shared_udp_sockets)
    await keepalives.start()
    if media is not None:
        await media.start()
        # Calls the accounting service closed as timeout: their sessions deleted here.
        await bus.consume(
            MEDIA_EXPIRED_QUEUE,
            MediaExpiry(media.client),
            prefetch=8,
            events=[MEDIA_EXPIRED_EVENTS],
        )
    return driver, sockets


def media_settings(settings: Settings) -> MediaSettings:
    return MediaSettings(
        default=settings.media_relay,
        required=settings.media_relay_required,
        retry_after=settings.overload_retry_after,
        domains=parse_domain_policies(settings.media_relay_domains),
    )


def _unset_handler(
    _data: bytes, _source: Destination, _listener: Listener, _received_at: float | None
) -> None:
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
