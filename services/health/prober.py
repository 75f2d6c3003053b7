"""The asyncio side of probing: send OPTIONS, run its client transaction, await the answer.

Each probe is one non-INVITE client transaction whose Timer F is the probe
timeout (T1 = timeout / 64), so retransmissions over UDP and the give-up time
follow RFC 3261 scaled to the timeout, and a late answer is absorbed by the
transaction layer instead of being mistaken for the next probe's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from services.health.capture import ProbeCapture
from services.health.options import options_request, probe_destination
from shared.settings import ListenAddress
from shared.sip.errors import SipError
from shared.sip.message import Response, parse_message
from shared.sip.timers import TimerSettings
from shared.sip.transaction import (
    ClientTransaction,
    ResponseReceived,
    Send,
    TimedOut,
    TransactionEvent,
    TransactionTable,
    TransportFailed,
)
from shared.sip.transport.base import Listener, TransportError
from shared.sip.transport.destination import Destination
from shared.sip.transport.hub import Transports
from shared.sip.transport.tls_context import ProfileLookup, TlsFiles

log = logging.getLogger("callmesh.health.prober")


@dataclass(frozen=True, slots=True)
class ProbeOutcome:
    """A final ``status`` with its round trip, or the ``error`` that stood in for one."""

    status: int | None = None
    rtt_ms: float | None = None
    error: str | None = None


class OptionsProber:
    """One socket pair (UDP bound to ``source``, TCP on demand) probing any number of targets."""

    def __init__(
        self,
        source: ListenAddress,
        timeout: float,
        tls: TlsFiles | None = None,
        profiles: ProfileLookup | None = None,
        capture: ProbeCapture | None = None,
    ) -> None:
        """`tls`: the CAs a TLS gateway's certificate is checked with; `profiles`: the
        gateways' own TLS options (client certificates), as the edges use them; `capture`:
        where probes are mirrored as HEP (stopped with the prober)."""
        self.source = source
        self.capture = capture
        self._tls = tls
        self._profiles = profiles
        self.table = TransactionTable(TimerSettings(t1=timeout / 64, t2=timeout / 4))
        self._pending: dict[ClientTransaction, tuple[asyncio.Future[ProbeOutcome], float]] = {}
        self._transports: Transports | None = None
        self._listener: Listener | None = None
        self._timer: asyncio.Handle | None = None
        self._timer_at = 0.0
        """When `_timer` is due: uvloop answers `call_at` with a past deadline by a plain
        `Handle`, which has no `when()` (a probe failed on it under load)."""
        self._sends: set[asyncio.Task[None]] = set()

    @property
    def listener(self) -> Listener:
        if self._listener is None:
            raise RuntimeError("the prober is not open")
        return self._listener

    async def open(self) -> None:
        self._transports = Transports(self._received, tls=self._tls, profiles=self._profiles)
        self._listener = await self._transports.listen(self.source)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for future, _ in self._pending.values():
            future.cancel()
        self._pending.clear()
        if self._transports is not None:
            await self._transports.close()
            self._transports = None
        if self.capture is not None:
            await self.capture.stop()

    async def probe(self, address: str) -> ProbeOutcome:
        """Send one OPTIONS to ``address`` and wait for its final response or timeout."""
        try:
            destination = probe_destination(address)
        except SipError as error:
            return ProbeOutcome(error=f"unusable address: {error}")
        listener = self.listener
        request = options_request(address, destination, listener.host, listener.port)
        loop = asyncio.get_running_loop()
        now = loop.time()
        client, events = self.table.start_client(request, destination, now)
        future: asyncio.Future[ProbeOutcome] = loop.create_future()
        self._pending[client] = (future, now)
        for event in events:
            if isinstance(event, Send):
                await self._send(client, event)
        self._schedule()
        return await future

    async def _send(self, client: ClientTransaction, transmit: Send) -> None:
        transports = self._transports
        try:
            if transports is None:
                raise TransportError("the prober is closed")
            local = await transports.send(transmit.data, transmit.destination)
        except (TransportError, OSError) as error:
            self._handle(client, client.transport_error(), f"transport: {error}")
            return
        if self.capture is not None:
            to = transmit.destination
            self.capture.sent(transmit.data, client.request.call_id, local, (to.host, to.port))

    def _received(self, data: bytes, source: Destination, listener: Listener) -> None:
        try:
            message = parse_message(data, stream=source.transport != "udp")
            if not isinstance(message, Response):
                return  # the prober is no server: stray requests are ignored
            client = self.table.match_response(message)
            call_id = message.call_id
        except SipError as error:
            log.info("dropped a malformed message from %s:%d: %s", source.host, source.port, error)
            return
        if self.capture is not None:  # late and stray answers too: Homer shows what came
            self.capture.received(data, call_id, (source.host, source.port), listener)
        if client is not None:
            now = asyncio.get_running_loop().time()
            self._handle(client, client.receive_response(message, now))
            if client.answered:  # nothing reads the probe again: its bytes for Timer K
                client.hold_request_as_bytes()
            self._schedule()

    def _expire(self) -> None:
        self._timer = None
        for transaction, event in self.table.expire(asyncio.get_running_loop().time()):
            if isinstance(transaction, ClientTransaction):
                self._handle(transaction, [event])
        self._schedule()

    def _schedule(self) -> None:
        deadline = self.table.next_deadline()
        if self._timer is not None:
            if deadline is not None and self._timer_at == deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._expire)
            self._timer_at = deadline

    def _handle(
        self, client: ClientTransaction, events: list[TransactionEvent], error: str = ""
    ) -> None:
        for event in events:
            if isinstance(event, Send):
                task = asyncio.get_running_loop().create_task(self._send(client, event))
                self._sends.add(task)
                task.add_done_callback(self._sends.discard)
            elif isinstance(event, ResponseReceived) and event.response.status >= 200:
                self._settle(client, event.response.status, None)
            elif isinstance(event, TimedOut):
                self._settle(client, None, "timeout")
            elif isinstance(event, TransportFailed):
                self._settle(client, None, error or "transport error")

    def _settle(self, client: ClientTransaction, status: int | None, error: str | None) -> None:
        pending = self._pending.pop(client, None)
        if pending is None:
            return
        future, started = pending
        if future.done():
            return
        if status is None and self.capture is not None:
            request = client.request
            self.capture.failed(request.uri_text, request.call_id, error or "", self.listener)
        rtt = (asyncio.get_running_loop().time() - started) * 1000 if status is not None else None
        future.set_result(ProbeOutcome(status, rtt, error))
