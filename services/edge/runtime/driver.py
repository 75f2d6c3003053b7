"""The asyncio side of the proxy: bytes and time into `Proxy`, its actions out to the network.

Timers: the whole worker has one `call_at` handle, set to the earliest
deadline of the transaction table and the failover timers, and moved only
when a new deadline is earlier; nothing runs a task per transaction.
Publishing: events go out through `EventPublisher` (a bounded backlog and a
few background senders), so a slow or absent broker never holds up a call.
Failure reports pass `FailureReports` first (one per target and second, the
rest merged).
Round trips (a REGISTER to the registrar, a location lookup in Redis) run as
tasks too and feed their outcome back into the proxy; each is bounded by its
own timeout.
Overload: a probe every `LOOP_PROBE_INTERVAL` measures how late the loop runs
it and feeds the proxy's `LoadShedder`, which refuses new calls while it lags.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from services.edge import metrics
from services.edge.feeds.location import LocationFeed
from services.edge.feeds.protection import ProtectionFeed
from services.edge.policy.failure_reports import FailureReports
from services.edge.proxy.actions import Action, AuthFailed, Lookup, Publish, Register, Send
from services.edge.proxy.core import Proxy
from services.edge.runtime.keepalives import KeepaliveRunner
from services.edge.runtime.publisher import EventPublisher
from services.edge.runtime.sockets import EdgeSockets
from shared.bus import Bus, BusUnavailable
from shared.contracts.edge import TargetFailed
from shared.contracts.event import Event
from shared.contracts.protection import ScannerFlagged, SourceBlocked
from shared.contracts.registrar import (
    REGISTER_QUEUE,
    REGISTER_TIMEOUT,
    RegisterReply,
    RegisterRequest,
)
from shared.sip.transaction import ClientTransaction
from shared.sip.transport.base import Listener, OversizeDatagramError, TransportError
from shared.sip.transport.destination import Destination

log = logging.getLogger("callmesh.edge")

MAX_HELD_ANSWERS = 1000
"""Answers to failed authentications held back at once; past it they go out undelayed."""
LOOP_PROBE_INTERVAL = 0.1
"""Short enough that shedding starts within a fraction of a second of the loop falling behind."""


class ProxyDriver:
    """Runs one `Proxy` on one event loop; `on_message` is the sockets' handler."""

    def __init__(
        self,
        proxy: Proxy,
        bus: Bus,
        *,
        feed: LocationFeed | None = None,
        instance: str = "",
        protection: ProtectionFeed | None = None,
        keepalives: KeepaliveRunner | None = None,
    ) -> None:
        self.proxy = proxy
        self.sockets: EdgeSockets | None = None
        self._bus = bus
        self._feed = feed
        self._protection = protection
        self._keepalives = keepalives
        self._held_answers = 0
        self._instance = instance
        self._round_trips: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.publisher = EventPublisher(bus)
        self._probe: asyncio.TimerHandle | None = None
        self._probe_due = 0.0
        self._reports = FailureReports()
        self._refused_counted = 0

    def start(self, sockets: EdgeSockets) -> None:
        self.sockets = sockets
        self._set_wall_offset()
        self._schedule_probe()

    async def stop(self) -> None:
        for handle in (self._timer, self._probe):
            if handle is not None:
                handle.cancel()
        tasks = [*self._background, *self._round_trips]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.publisher.stop()
        if self._keepalives is not None:
            await self._keepalives.stop()
        if self._protection is not None:
            await self._protection.stop()

    def _set_wall_offset(self) -> None:
        """Nonces and call events carry wall time; the core runs on the loop's clock."""
        offset = time.time() - self._loop.time()
        if self.proxy.subscribers is not None:
            self.proxy.subscribers.wall_offset = offset
        if self.proxy.call_events is not None:
            self.proxy.call_events.wall_offset = offset

    def on_message(self, data: bytes, source: Destination, listener: Listener) -> None:
        if self._keepalives is not None and self._keepalives.claims(data, source):
            return
        self._run(self.proxy.receive(data, source, listener, self._loop.time()))
        self._reschedule()

    def admit_connection(self, source: Destination) -> bool:
        """A peer opened a TCP connection: it counts as a request for the flood detector,
        and a source over the limit (or blocked) has it closed at once."""
        actions: list[Action] = []
        refused = self.proxy.policies.refuse_connection(source, self._loop.time(), actions)
        self._run(actions)
        return not refused

    # ----- time ------------------------------------------------------------------------

    def _reschedule(self) -> None:
        deadline = self.proxy.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self._run(self.proxy.expire(self._loop.time()))
        self._reschedule()

    def _schedule_probe(self) -> None:
        self._probe_due = self._loop.time() + LOOP_PROBE_INTERVAL
        self._probe = self._loop.call_at(self._probe_due, self._on_probe)

    def _on_probe(self) -> None:
        now = self._loop.time()
        lag = max(0.0, now - self._probe_due)
        metrics.LOOP_LAG.observe(lag)
        self._watch_load(lag, now)
        for event in self._reports.flush(now):
            self.publisher.offer(event)
        metrics.EVENTS_WAITING.value = self.publisher.waiting
        self._set_wall_offset()
        for kind, count in self.proxy.table.counts().items():
            metrics.TRANSACTIONS[kind] = count
        self._schedule_probe()

    def _watch_load(self, lag: float, now: float) -> None:
        shedder = self.proxy.shedder
        if shedder is None:
            return
        was_shedding = shedder.shedding
        if shedder.observe(lag, now):
            log.warning(
                "event loop %.0f ms late: refusing new calls (503) until it catches up", lag * 1000
            )
        elif was_shedding and not shedder.shedding:
            log.warning(
                "event loop caught up: accepting new calls again (%d refused so far)",
                shedder.refused,
            )
        metrics.SHEDDING.value = 1 if shedder.shedding else 0
        if shedder.refused > self._refused_counted:
            metrics.CALLS_REFUSED.value += shedder.refused - self._refused_counted
            self._refused_counted = shedder.refused

    # ----- actions ---------------------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action)
            elif isinstance(action, Publish):
                self._publish(action.event)
            elif isinstance(action, Register):
                self._round_trip(self._register(action))
            elif isinstance(action, Lookup):
                self._round_trip(self._lookup(action))
            elif isinstance(action, AuthFailed):
                self._round_trip(self._auth_failed(action))

    def _round_trip(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._round_trips.add(task)
        task.add_done_callback(self._round_trips.discard)

    async def _register(self, action: Register) -> None:
        source = action.source
        request = RegisterRequest(
            sip=action.data,
            source_host=source.host,
            source_port=source.port,
            transport=source.transport,
            edge=self._instance,
            edge_address=action.edge_address,
            connection_id=source.connection_id,
        )
        reply: bytes | None = None
        try:
            body = await self._bus.request(
                REGISTER_QUEUE, request.to_bytes(), timeout=REGISTER_TIMEOUT
            )
            answer = RegisterReply.model_validate_json(body)
            reply = answer.sip
            failed = answer.failed_auth
            if failed is not None:
                await self._count_failure(source, failed.user, failed.realm, "REGISTER")
        except (TimeoutError, BusUnavailable, ValidationError) as error:
            log.warning(
                "REGISTER from %s not answered by the registrar: %s",
                source.host,
                f"{type(error).__name__}: {error}",
            )
        self._run(self.proxy.registered(action.server, reply, self._loop.time()))
        self._reschedule()

    async def _lookup(self, action: Lookup) -> None:
        failed = self._feed is None
        if self._feed is not None:
            try:
                await self._feed.resolve(action.query)
            except (RedisError, OSError) as error:
                log.warning("location lookup %s failed: %s", action.query, error)
                failed = True
        self._run(self.proxy.resume(action.server, self._loop.time(), failed=failed))
        self._reschedule()

    async def _auth_failed(self, action: AuthFailed) -> None:
        await self._count_failure(action.source, action.user, action.realm, action.method)
        self._run(self.proxy.refuse(action.server, self._loop.time()))
        self._reschedule()

    async def _count_failure(self, source: Destination, user: str, realm: str, method: str) -> None:
        """Count a failed authentication, then hold its answer back as the count asks."""
        if self._protection is None:
            return
        delay = await self._protection.auth_failed(source, user, realm, method)
        if delay <= 0 or self._held_answers >= MAX_HELD_ANSWERS:
            return
        self._held_answers += 1
        try:
            await asyncio.sleep(delay)  # this request's task only: the loop serves the others
        finally:
            self._held_answers -= 1

    def _send(self, send: Send) -> None:
        sockets = self.sockets
        if sockets is None:
            return
        destination = send.destination
        if destination.transport == "udp" and is_ip_literal(destination.host):
            try:
                sockets.send_udp(send.data, destination)
            except (TransportError, OSError) as error:
                self._send_failed(send, error)
            return
        self._background_task(self._send_slowly(sockets, send))

    async def _send_slowly(self, sockets: EdgeSockets, send: Send) -> None:
        """Streams, and UDP to a host name (resolved first: the UDP socket takes IPs only)."""
        destination = send.destination
        try:
            if destination.transport != "udp":
                await sockets.send_tcp(send.data, destination)
                return
            found = await self._loop.getaddrinfo(
                destination.host, destination.port, type=socket.SOCK_DGRAM
            )
            address = str(found[0][4][0])
            sockets.send_udp(send.data, replace(destination, host=address))
        except (TransportError, OSError) as error:
            self._send_failed(send, error)

    def _send_failed(self, send: Send, error: Exception) -> None:
        destination = send.destination
        if isinstance(error, OversizeDatagramError):  # names the peer; counted by the transport
            log.warning("%s: not sent", error)
        else:
            log.info(
                "send to %s:%s/%s failed: %s",
                destination.host,
                destination.port,
                destination.transport,
                error,
            )
        client: ClientTransaction | None = send.client
        if client is not None:
            self._run(self.proxy.transport_failed(client, self._loop.time()))
            self._reschedule()

    def _publish(self, event: Event) -> None:
        if self._protection is not None and isinstance(event, SourceBlocked | ScannerFlagged):
            self._background_task(self._protection.record(event))
        if isinstance(event, TargetFailed):
            reported = self._reports.offer(event, self._loop.time())
            if reported is None:
                return
            event = reported
        self.publisher.offer(event)

    def _background_task(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


_IP_LITERALS: dict[str, bool] = {}


def is_ip_literal(host: str) -> bool:
    """Memoised: asked for every UDP send, and peers are few compared with messages."""
    known = _IP_LITERALS.get(host)
    if known is None:
        try:
            ipaddress.ip_address(host)
            known = True
        except ValueError:
            known = False
        if len(_IP_LITERALS) > 65536:
            _IP_LITERALS.clear()
        _IP_LITERALS[host] = known
    return known
