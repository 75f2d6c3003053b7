"""The asyncio side of the proxy: bytes and time into `Proxy`, its actions out to the network.

Timers: the whole worker has one `call_at` handle (`LoopTimer`, on a 5 ms tick), set to
the earliest deadline of the transaction table and the failover timers, and moved only
when a new deadline is earlier; nothing runs a task per transaction.
Publishing: events go out through `EventPublisher` (a bounded backlog and a
few background senders, call events journaled in the worker's outbox until
confirmed), so a slow or absent broker never holds up a call.
Failure reports pass `FailureReports` first (one per target and second, the
rest merged).
Round trips (registrar, location, DNS, limits, fraud, rtpengine) run in
`round_trips`; the loop probe (load shedding, DNS refresh) in `loop_probe`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import Any

from services.edge.feeds.location import LocationFeed
from services.edge.feeds.protection import ProtectionFeed
from services.edge.keepalive.ping import CALL_ID_MARK as PING_MARK
from services.edge.policy.failure_reports import FailureReports
from services.edge.proxy.actions import Action, HandOff, Publish, Send
from services.edge.proxy.core import Proxy
from services.edge.runtime.b2bua_runner import B2buaRunner
from services.edge.runtime.hangups import MARK as HANGUP_MARK
from services.edge.runtime.hangups import Hangups
from services.edge.runtime.journal import Journal
from services.edge.runtime.keepalives import KeepaliveRunner
from services.edge.runtime.loop_probe import LoopProbe
from services.edge.runtime.loop_timer import LoopTimer
from services.edge.runtime.media import MediaRunner
from services.edge.runtime.publisher import EventPublisher
from services.edge.runtime.round_trips import RoundTrips
from services.edge.runtime.sockets import EdgeSockets
from shared.bus import Bus
from shared.contracts.call_event_json import is_call_event
from shared.contracts.edge import TargetFailed
from shared.contracts.event import Event
from shared.contracts.protection import ScannerFlagged, SourceBlocked
from shared.dns import DnsCache, NameSpec
from shared.dns.locate import is_ip
from shared.dns.resolver import DnsResolver
from shared.sip.transaction import ClientTransaction
from shared.sip.transport.base import (
    Listener,
    LogThrottle,
    OversizeDatagramError,
    TransportError,
    unlogged_note,
)
from shared.sip.transport.destination import Destination

log = logging.getLogger("callmesh.edge")


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
        dns: DnsResolver | None = None,
        media: MediaRunner | None = None,
        event_batch: int = 1,
        event_linger: float = 0.0,
        outbox: Journal | None = None,
        fsync_interval: float = 0.0,
    ) -> None:
        self.proxy = proxy
        self.media = media
        self.sockets: EdgeSockets | None = None
        self.hangups: Hangups | None = None
        """The API's hang-ups of this process (`start` sets it): their BYEs' answers go there."""
        self.b2bua: B2buaRunner | None = None
        """The worker's B2BUA (startup sets it): the calls of rules with `mode: b2bua`."""
        self._protection = protection
        self._keepalives = keepalives
        self._loop = asyncio.get_running_loop()
        self.dns = dns or DnsResolver(DnsCache(), clock=self._loop)
        self.timer = LoopTimer(self._loop, self._fire)
        self._background: set[asyncio.Task[None]] = set()
        self.publisher = EventPublisher(
            bus,
            batch=event_batch,
            linger=event_linger,
            journal=outbox,
            fsync_interval=fsync_interval,
        )
        self._reports = FailureReports()
        self._send_failures = LogThrottle()
        """Sends that fail (a dead peer, an answer too big for a datagram) are one line per
        peer and kind every ten seconds: a peer can make them fail at any rate."""
        self.round_trips = RoundTrips(
            proxy,
            bus,
            self.dns,
            self._deliver,
            feed=feed,
            protection=protection,
            media=media,
            instance=instance,
        )
        """Where startup sets the limits and fraud runners and the flow instance."""
        self._probe = LoopProbe(
            proxy, self.dns, self.publisher, self._reports, self._background_task
        )

    def start(self, sockets: EdgeSockets) -> None:
        self.sockets = sockets
        self._probe.receive_wait = sockets.take_longest_wait
        self._probe.standing_wait = sockets.take_standing_wait
        timers = self.proxy.timers
        self.hangups = Hangups(
            sockets, self.publisher, self.proxy.call_events, t1=timers.t1, timeout=8 * timers.t1
        )
        self._probe.start()

    async def stop(self) -> None:
        self._probe.stop()
        self.timer.close()
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, self.round_trips.stop(), return_exceptions=True)
        if self.b2bua is not None:
            await self.b2bua.stop()
        await self.publisher.stop()
        if self.media is not None:
            await self.media.stop()
        if self._keepalives is not None:
            await self._keepalives.stop()
        if self._protection is not None:
            await self._protection.stop()

    def on_message(
        self, data: bytes, source: Destination, listener: Listener, received_at: float | None
    ) -> None:
        """`received_at`: a datagram's kernel receive time (loop clock), so the core times it,
        and so a call's events, by its arrival, not by the loop's lag; None: now (streams)."""
        if data.startswith(b"SIP/2.0 ") and self._answers_our_own(data, source):
            return
        now = self._loop.time() if received_at is None else received_at
        self._run(self.proxy.receive(data, source, listener, now))
        self._reschedule()

    def _answers_our_own(self, data: bytes, source: Destination) -> bool:
        """A response to the runtime's own pings or BYEs, taken by their runners.

        Each runner is asked only of a response carrying its mark (what its `claims`
        checks first): the runners run as Python, and asking both of every message cost
        twelve interpreted calls a call."""
        keepalives = self._keepalives
        if keepalives is not None and PING_MARK in data and keepalives.claims(data, source):
            return True
        hangups = self.hangups
        return hangups is not None and HANGUP_MARK in data and hangups.claims(data, source)

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
        b2bua = self.b2bua
        if b2bua is not None and b2bua.calls:
            other = b2bua.next_deadline()
            if other is not None and (deadline is None or other < deadline):
                deadline = other
        if deadline is not None:
            self.timer.arm(deadline)

    def _fire(self) -> None:
        now = self._loop.time()
        self._run(self.proxy.expire(now))
        if self.b2bua is not None and self.b2bua.calls:
            self._run(self.b2bua.expire(now))
        self._reschedule()

    # ----- actions ---------------------------------------------------------------------

    def _run(self, actions: Sequence[Action]) -> None:
        """Run the core's actions: its events first (write-ahead), then in order the rest.

        Offering an event journals it (the outbox): so whatever of a call left the
        worker, its event is journaled before it, and a worker killed between the two
        still has it published by its successor: a 200 relayed and its `answered`
        event lost with the process would leave the caller talking and the record open.
        """
        for action in actions:
            if isinstance(action, Publish):
                self._publish(action.event)
        for action in actions:
            if isinstance(action, Send):
                self._send(action)
            elif isinstance(action, HandOff):
                if self.b2bua is not None and action.adopt:
                    self.b2bua.adopt(action, self._deliver)
                elif self.b2bua is not None:
                    self._run(self.b2bua.hand_off(action, self._loop.time()))
            elif not isinstance(action, Publish):
                self.round_trips.start(action)

    async def hang_up_b2bua(self, call_id: str, tag: str) -> bool:
        """End a B2BUA call from the API (`B2buaRunner.hang_up`): its BYEs and event out."""
        return self.b2bua is not None and await self.b2bua.hang_up(call_id, tag, self._deliver)

    async def transfer_b2bua(self, call_id: str, tag: str, to: str) -> tuple[str, str]:
        """Begin a B2BUA call's transfer from the API (`B2buaRunner.transfer`)."""
        if self.b2bua is None:
            return "elsewhere", ""
        return await self.b2bua.transfer(call_id, tag, to, self._deliver)

    def _deliver(self, actions: Sequence[Action]) -> None:
        """A round trip's outcome, as the core answered it: run, then time again."""
        self._run(actions)
        self._reschedule()

    def _send(self, send: Send) -> None:
        sockets = self.sockets
        if sockets is None:
            return
        destination = send.destination
        if destination.transport == "udp" and is_ip(destination.host):
            try:
                sockets.send_udp(send.data, destination)
            except (TransportError, OSError) as error:
                self._send_failed(send, error)
            return
        self._background_task(self._send_slowly(sockets, send))

    async def _send_slowly(self, sockets: EdgeSockets, send: Send) -> None:
        """Streams, and UDP or TCP to a host name (its address from `CALLMESH_DNS_SERVERS` first,
        A then AAAA; a next hop's NAPTR and SRV records are the proxy core's, before this:
        what comes here by name is a response to a Via's sent-by). TLS dials the name: its
        certificate is verified against it."""
        destination = send.destination
        try:
            if destination.transport in ("udp", "tcp") and not is_ip(destination.host):
                spec = NameSpec(destination.host, destination.port, destination.transport)
                located = await self.dns.resolve(spec)
                if not located.targets:
                    raise TransportError(f"{destination.host}: {located.reason}")
                destination = replace(destination, host=located.targets[0].address)
            if destination.transport != "udp":
                await sockets.send_stream(send.data, destination)
                return
            sockets.send_udp(send.data, destination)
        except (TransportError, OSError) as error:
            self._send_failed(send, error)

    def _send_failed(self, send: Send, error: Exception) -> None:
        destination = send.destination
        oversize = isinstance(error, OversizeDatagramError)
        where = f"{destination.host}:{destination.port}/{destination.transport}"
        kind = f"{'oversize' if oversize else 'failed'} {where}"  # one line per peer and kind
        unlogged = self._send_failures.due(kind, self._loop.time())
        if unlogged is not None:
            more = unlogged_note(unlogged)
            if oversize:  # names the peer; counted by the transport
                log.warning("%s: not sent%s", error, more)
            else:
                log.info("send to %s failed: %s%s", where, error, more)
        client: ClientTransaction | None = send.client
        if client is None:
            return
        now = self._loop.time()
        if self.b2bua is not None and self.b2bua.holds(client):
            self._run(self.b2bua.transport_failed(client, now))
        else:
            self._run(self.proxy.transport_failed(client, now))
        self._reschedule()

    def _publish(self, event: Event) -> None:
        """Offer `event` to the publisher; a protection state is recorded first, a target's
        failure merged (`FailureReports`).  A call event, nearly every one, is neither: told
        by its type's identity (`is_call_event`), it skips their ``isinstance``s, each an
        ``ABCMeta.__instancecheck__`` of a pydantic model."""
        if not is_call_event(event):
            if self._protection is not None and isinstance(event, (SourceBlocked, ScannerFlagged)):
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
