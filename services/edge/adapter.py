"""The asyncio side of the proxy: bytes and time into `Proxy`, its actions out to the network.

Timers: the whole worker has one `call_at` handle, set to the earliest
deadline of the transaction table and the failover timers, and moved only
when a new deadline is earlier; nothing runs a task per transaction.
Publishing: events go out from a bounded set of background tasks, so a slow
or absent broker never holds up a call; beyond the bound they are dropped and
counted in the log.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from services.edge import metrics
from services.edge.proxy.actions import Action, Publish, Send
from services.edge.proxy.core import Proxy
from services.edge.sockets import EdgeSockets
from shared.bus import Bus, Event
from shared.sip.transaction import ClientTransaction
from shared.sip.transport.base import Listener, TransportError
from shared.sip.transport.destination import Destination

log = logging.getLogger("callmesh.edge")

MAX_PENDING_PUBLISHES = 256
LOOP_PROBE_INTERVAL = 1.0


class ProxyDriver:
    """Runs one `Proxy` on one event loop; `on_message` is the sockets' handler."""

    def __init__(self, proxy: Proxy, bus: Bus) -> None:
        self.proxy = proxy
        self.sockets: EdgeSockets | None = None
        self._bus = bus
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._dropped_publishes = 0
        self._probe: asyncio.TimerHandle | None = None
        self._probe_due = 0.0

    def start(self, sockets: EdgeSockets) -> None:
        self.sockets = sockets
        self._schedule_probe()

    async def stop(self) -> None:
        for handle in (self._timer, self._probe):
            if handle is not None:
                handle.cancel()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    def on_message(self, data: bytes, source: Destination, listener: Listener) -> None:
        self._run(self.proxy.receive(data, source, listener, self._loop.time()))
        self._reschedule()

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
        metrics.LOOP_LAG.observe(max(0.0, self._loop.time() - self._probe_due))
        for kind, count in self.proxy.table.counts().items():
            metrics.TRANSACTIONS.labels(kind).set(count)
        self._schedule_probe()

    # ----- actions ---------------------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self._send(action)
            elif isinstance(action, Publish):
                self._publish(action.event)

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
        log.info("send to %s:%s/%s failed: %s", destination.host, destination.port,
                 destination.transport, error)  # fmt: skip
        client: ClientTransaction | None = send.client
        if client is not None:
            self._run(self.proxy.transport_failed(client, self._loop.time()))
            self._reschedule()

    def _publish(self, event: Event) -> None:
        if len(self._background) >= MAX_PENDING_PUBLISHES:
            self._dropped_publishes += 1
            if self._dropped_publishes % 100 == 1:
                log.warning("event publishing backlog full; %d events dropped",
                            self._dropped_publishes)  # fmt: skip
            return
        self._background_task(self._publish_now(event))

    async def _publish_now(self, event: Event) -> None:
        try:
            await self._bus.publish(event)
        except Exception as error:  # the broker's trouble must not reach the call path
            log.info("could not publish %s: %s", event.routing_key, error)

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
