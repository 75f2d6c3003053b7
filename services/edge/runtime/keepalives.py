"""The asyncio side of keepalives: binding events in, pings out, answers and silences noted.

The schedule (``services.edge.keepalive.schedule``) decides; this module
feeds it the ``registrar.binding.…`` events (every worker hears them all and
keeps the bindings whose ``edge`` is its own instance), wakes when the next
ping is due (at most every ``MAX_SLEEP``, so a binding added meanwhile waits
no longer), sends through the worker's sockets, and reports silent bindings to
the registrar over ``registrar.unreachable``.  Answers to the OPTIONS come
back to the worker's sockets like any response; ``claims`` takes them before
the proxy core (their Call-ID names the binding, and they must come from
the binding's flow: the Call-ID is computable from the AoR and Contact, so a
stranger could otherwise keep a dead binding alive with forged answers).  A CRLF ping on a
connection counts as answered when its pong (a lone CRLF, RFC 5626 §4.4.1) comes back on that
same connection within ``PONG_WINDOW``: the stream transports tell ``ponged`` of each pong
with the connection it came on (``TcpTransport.on_pong``, TLS's too).  A pong that does not
come is a failed ping (counted), and the timeout applies as for OPTIONS.  The write alone
proves nothing: a phone that vanished without closing its connection leaves it writable
until the kernel gives up (about 15 minutes).  WebSocket connections have no CRLF framing
(RFC 7118): there the write still counts.

Bindings registered before this worker started (a restart, a new worker
taking an old instance name) are read from the store once at start, after
the events are subscribed so none is missed between: a page at a time,
skipping other edges' records before parsing them, the loop handed back
between pages (``shared.registrar.location.bindings_mentioning``).

A report the bus could not take (the broker away) is kept and sent again
at the next round, up to ``MAX_UNSENT`` of them; the registrar's check of
the binding's expiry makes a late report harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from services.edge import metrics
from services.edge.keepalive.ping import CALL_ID_MARK, CRLF_PING, options_ping, ping_call_id
from services.edge.keepalive.schedule import (
    KeepaliveSchedule,
    Key,
    Ping,
    Watched,
    needs_keepalive,
)
from services.edge.proxy.interfaces import Interfaces
from services.edge.runtime.sockets import EdgeSockets
from shared.background import cancel_and_wait
from shared.bus import Bus, BusUnavailable, Envelope
from shared.contracts.registrar import (
    UNREACHABLE_QUEUE,
    BindingEvent,
    BindingExpired,
    BindingRemoved,
    UnreachableBinding,
)
from shared.registrar.location import bindings_mentioning
from shared.registrar.model import Location
from shared.sip.errors import SipError
from shared.sip.message import Response, parse_message
from shared.sip.transport.base import TransportError
from shared.sip.transport.destination import Destination, destination_of
from shared.sip.uri import parse_uri
from shared.store import Store

log = logging.getLogger("callmesh.edge")

MAX_SLEEP = 1.0
MAX_UNSENT = 10_000
"""Unreachable reports kept for a broker that is away (beyond: their expiry removes them)."""
FAILED_ROUND_PAUSE = 1.0
"""Seconds before the next round after one failed (no tight loop on a lasting fault)."""
PONG_WINDOW = 10.0
"""Seconds a CRLF ping's pong may take (RFC 5626 §4.4.1); later, the ping failed."""
PONGED = ("tcp", "tls")
"""The stream transports whose pongs are heard (WebSocket has no CRLF framing, RFC 7118)."""
Flow = tuple[str, int | None]
"""A connection: its transport and id (ids are per transport table)."""
BINDING_EVENTS = "registrar.binding.#"
_GONE = frozenset({BindingRemoved.routing_key, BindingExpired.routing_key})


class KeepaliveRunner:
    def __init__(
        self,
        schedule: KeepaliveSchedule,
        bus: Bus,
        sockets: EdgeSockets,
        interfaces: Interfaces,
        instance: str,
        *,
        store: Store | None = None,
    ) -> None:
        """`store`: where to read the bindings this worker held before it started (None: none)."""
        self.schedule = schedule
        self.store = store
        self.bus = bus
        self.sockets = sockets
        self.interfaces = interfaces
        self.instance = instance
        self._loop = asyncio.get_running_loop()
        self._keys: dict[str, tuple[Key, tuple[str, int] | None]] = {}
        """Ping Call-ID → the binding, and the address its answers come from."""
        self._cseq = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._sending: set[asyncio.Task[None]] = set()
        self._unsent: list[Location] = []
        """Reports the bus refused, to send again."""
        self._loader: asyncio.Task[None] | None = None
        self._awaiting: dict[Flow, dict[Key, float]] = {}
        """Per connection, the bindings whose CRLF ping went out on it, and when."""
        self._pinged: deque[tuple[float, Flow, Key]] = deque()
        """The same, oldest first: pings whose pong is overdue are dropped from the front."""

    async def start(self) -> None:
        for name in PONGED:
            self.sockets.stream(name).on_pong = self.ponged
        await self.bus.subscribe([BINDING_EVENTS], self._on_event)
        self._task = self._loop.create_task(self._run())
        if self.store is not None:
            self._loader = self._loop.create_task(self._load(self.store))

    async def _load(self, store: Store) -> None:
        """Watch the bindings of this instance already in the store (read once, in pages)."""
        started, count = self._loop.time(), 0
        try:
            async for page in bindings_mentioning(store, self.instance):
                for location in page:
                    if needs_keepalive(location, self.instance):
                        self.note(location, gone=False)
                        count += 1
                metrics.KEEPALIVES_LOADED.value = count
                await asyncio.sleep(0)  # SIP first: the next page after what is queued
        except Exception as error:  # the events still bring every refreshed binding
            log.error("keepalives: bindings not read from the store: %r", error)
            return
        took = self._loop.time() - started
        log.info("keepalives: %d bindings read from the store in %.2f s", count, took)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        await cancel_and_wait(self._loader)
        await cancel_and_wait(self._task)
        for task in list(self._sending):
            await cancel_and_wait(task)

    # ----- in ----------------------------------------------------------------------------

    async def _on_event(self, envelope: Envelope) -> None:
        try:
            event = envelope.payload(BindingEvent)
        except ValidationError:
            return
        self.note(event.binding, gone=envelope.type in _GONE)

    def note(self, location: Location, *, gone: bool) -> None:
        """A binding was added or refreshed, or (``gone``) removed or expired."""
        key = (location.aor, location.contact)
        if gone or not needs_keepalive(location, self.instance):
            self.schedule.forget(*key)
            self._keys.pop(ping_call_id(*key), None)
        else:
            self.schedule.watch(location, self._loop.time())
            self._keys[ping_call_id(*key)] = (key, _flow_address(location))
            self._wake.set()
        metrics.KEEPALIVES_WATCHED.value = len(self.schedule)

    def claims(self, data: bytes, source: Destination) -> bool:
        """Whether ``data``, from ``source``, answers one of our OPTIONS (then it is taken here)."""
        # Nothing watched (no phone behind NAT yet): no scan of every response for the mark.
        if not self._keys or not data.startswith(b"SIP/2.0 ") or CALL_ID_MARK not in data:
            return False
        try:
            message = parse_message(data)
            if not isinstance(message, Response):
                return False
            call_id = message.call_id  # parsed on first use: may be missing or malformed
        except SipError:
            return False
        known = self._keys.get(call_id.partition(".")[0])
        if known is None or known[1] != source.address:
            return False
        self.schedule.answered(*known[0])
        metrics.KEEPALIVE_ANSWERS.value += 1
        return True

    def ponged(self, source: Destination) -> None:
        """A CRLF pong came on ``source``'s connection: the bindings pinged on that very
        connection within ``PONG_WINDOW`` answered (a pong elsewhere answers none of them)."""
        waiting = self._awaiting.pop((source.transport, source.connection_id), None)
        if waiting is None:
            return
        since = self._loop.time() - PONG_WINDOW
        for key, sent in waiting.items():
            if sent >= since:
                self.schedule.answered(*key)
                metrics.KEEPALIVE_ANSWERS.value += 1
            else:  # too late (its entry not yet dropped by `_overdue`): failed all the same
                metrics.KEEPALIVE_PONGS_MISSED.value += 1

    def _overdue(self) -> None:
        """Pings whose pong did not come within ``PONG_WINDOW``: failed (counted, forgotten)."""
        since, pinged = self._loop.time() - PONG_WINDOW, self._pinged
        while pinged and pinged[0][0] < since:
            sent, flow, key = pinged.popleft()
            waiting = self._awaiting.get(flow)
            if waiting is not None and waiting.get(key) == sent:
                del waiting[key]
                if not waiting:
                    del self._awaiting[flow]
                metrics.KEEPALIVE_PONGS_MISSED.value += 1

    # ----- out ---------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                self.tick()
            except Exception as error:  # one bad round must not end this worker's keepalives
                log.error("keepalive round failed, next in %.0f s: %r", FAILED_ROUND_PAUSE, error)
                wait = FAILED_ROUND_PAUSE
            else:
                due = self.schedule.next_due()
                now = self._loop.time()
                wait = MAX_SLEEP if due is None else min(MAX_SLEEP, max(0.0, due - now))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):  # not wait_for: it can lose stop's cancel
                    await self._wake.wait()

    def tick(self) -> None:
        if self._unsent and not self._sending:  # the broker may be back: the refused ones again
            unsent, self._unsent = self._unsent, []
            now = time.time()
            for location in unsent:
                if location.expires_at > now:  # an expired one is gone anyway
                    self._background(self._report(location, again=True))
        if self._pinged:
            self._overdue()
        tick = self.schedule.tick(self._loop.time())
        for ping in tick.pings:
            self._ping(ping)
        for location in tick.unreachable:
            self._keys.pop(ping_call_id(location.aor, location.contact), None)
            metrics.KEEPALIVE_REMOVALS.value += 1
            self._background(self._report(location))
        metrics.KEEPALIVES_WATCHED.value = len(self.schedule)

    def _ping(self, ping: Watched) -> None:
        location = ping.location
        try:
            destination = destination_of(parse_uri(location.received))
        except SipError:
            metrics.KEEPALIVE_FAILURES[ping.ping.value] += 1
            return
        destination = replace(destination, connection_id=location.connection_id)
        if ping.ping is Ping.CRLF:
            self._send_stream(CRLF_PING, destination, ping)
            return
        self._cseq += 1
        interface = self.interfaces.outbound(destination.transport, destination.host)
        data = options_ping(location, interface.host, interface.via_port, self._cseq).to_bytes()
        if destination.transport != "udp":
            self._send_stream(data, destination, ping)
            return
        try:
            self.sockets.send_udp(data, destination)
        except (TransportError, OSError):
            metrics.KEEPALIVE_FAILURES[ping.ping.value] += 1
            return
        metrics.KEEPALIVES_SENT[ping.ping.value] += 1

    def _send_stream(self, data: bytes, destination: Destination, ping: Watched) -> None:
        """On the phone's open connection only: a flow ends with its connection (RFC 5626), and
        a new one to where the phone once was may reach someone else, who would "answer"."""
        try:
            connection = self.sockets.stream(destination.transport).connection(destination)
            if connection is None:
                raise TransportError(f"no open connection to {destination.host}")
            awaits_pong = ping.ping is Ping.CRLF and destination.transport in PONGED
            if awaits_pong:
                connection.crlf_ping()  # its framer then takes the next lone CRLF as the pong
            else:
                connection.write(data)
        except (TransportError, OSError):
            metrics.KEEPALIVE_FAILURES[ping.ping.value] += 1
            return
        metrics.KEEPALIVES_SENT[ping.ping.value] += 1
        key = (ping.location.aor, ping.location.contact)
        if not awaits_pong:
            if ping.ping is Ping.CRLF:  # WebSocket: no pong to await, the write is the sign
                self.schedule.answered(*key)
            return
        now, flow = self._loop.time(), (connection.source.transport, connection.id)
        self._awaiting.setdefault(flow, {})[key] = now
        self._pinged.append((now, flow, key))

    async def _report(self, location: Location, *, again: bool = False) -> None:
        try:
            report = UnreachableBinding(
                aor=location.aor,
                contact=location.contact,
                received=location.received,
                edge=location.edge,
                expires_at=location.expires_at,
            )
            await self.bus.send(UNREACHABLE_QUEUE, report.to_bytes())
        except BusUnavailable as error:  # again next round (its expiry removes it in the end)
            if len(self._unsent) < MAX_UNSENT:
                self._unsent.append(location)
            if not again:  # one line per report, not one per round while the broker is away
                metrics.KEEPALIVE_REPORTS_DELAYED.value += 1
                log.warning("unreachable binding %s not reported yet: %s", location.contact, error)
        except Exception as error:  # a background task: say it in one line, never unretrieved
            log.error("unreachable binding %s not reported: %r", location.contact, error)
        else:
            log.info(
                "binding unreachable", extra={"aor": location.aor, "contact": location.contact}
            )

    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coroutine)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)


def _flow_address(location: Location) -> tuple[str, int] | None:
    """Where the binding's REGISTER came from, hence its answers (None: not an address)."""
    try:
        return destination_of(parse_uri(location.received)).address
    except SipError:
        return None
