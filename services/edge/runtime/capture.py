"""Where a worker's SIP traffic is mirrored: every message received and sent passes `Capture`.

`EdgeSockets` calls `received` as it delivers a message to the proxy (after
any hand-over between workers, so the worker owning the call captures it, once)
and `sent` once a message has left a socket, with the transport, addresses and
ports as on the wire; a new transport in `EdgeSockets` is captured there.
Each message goes to the trace ring as it is (the ring reads its Call-ID only
when a look-up asks: the hot path pays an append), and each SIP message
(keep-alives and other non-SIP bytes are skipped), unless filtered out, to the
HEP sender as one HEPv3 packet; the filters are HEP's, the ring keeps all.

The correlation id is the Call-ID the caller sent: a topology-hidden leg's
Call-ID is mapped back (``CMH-~X`` is the outside's ``X``; ``CMH-<token>``
seals the inside's Call-ID, opened with the topology keyring and remembered),
so Homer and the trace ring show both legs of a hidden call as one.  Sampling
hashes that id, so a call is mirrored whole or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from typing import Final

from services.edge.runtime.publisher import EventPublisher
from services.edge.runtime.trace_ring import TraceEntry, TraceRing
from services.edge.topology.hiding import KIND_CALL_ID
from services.edge.topology.tokens import InvalidTokenError, Keyring
from shared.contracts.call_event_json import is_call_event
from shared.contracts.event import Event
from shared.hep.codec import ip_protocol
from shared.hep.mirror import HepMirror, mirror_of
from shared.hep.settings import CaptureSettings
from shared.routing_table.topology import TopologyOptions
from shared.settings import Settings
from shared.sip.message import peek_call_id
from shared.sip.transport.base import Listener

PREFIX: Final = TopologyOptions().call_id_prefix
"""Process-wide (`TopologyOptions` refuses another per target)."""
_MEMO_SIZE: Final = 65536


class Capture:
    """Correlates each message and hands it to the trace ring and the HEP mirror."""

    def __init__(
        self,
        hep: HepMirror | None,
        ring: TraceRing | None,
        *,
        keyring: Keyring | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hep = hep
        self.ring = ring
        self.local: tuple[str, int] = ("0.0.0.0", 0)
        """The worker's first SIP address: a HEP log's source and destination."""
        self._keyring = keyring
        self._clock = clock
        self._opened: dict[str, str] = {}
        if ring is not None:
            ring.correlate = self.correlation_id

    def received(
        self, data: bytes, transport: str, source: tuple[str, int], local: tuple[str, int]
    ) -> None:
        self._capture(data, "in", transport, source, local)

    def sent(
        self, data: bytes, transport: str, local: tuple[str, int], destination: tuple[str, int]
    ) -> None:
        self._capture(data, "out", transport, local, destination)

    def _capture(
        self,
        data: bytes,
        direction: str,
        transport: str,
        source: tuple[str, int],
        destination: tuple[str, int],
    ) -> None:
        now = self._clock()
        ring = self.ring
        if ring is not None:  # every message; its Call-ID is read when a look-up asks
            ring.add(TraceEntry(now, direction, transport, source, destination, data))
        hep = self.hep
        if hep is None:
            return
        raw_call_id = peek_call_id(data)
        if raw_call_id is None:
            return  # a keep-alive, or not SIP: nothing for Homer
        try:  # the strict decoding is the compiled fast path; a bad byte is rare
            call_id = raw_call_id.decode()
        except UnicodeDecodeError:
            call_id = raw_call_id.decode("utf-8", "replace")
        correlation = self.correlation_id(call_id)
        hep.sip(data, now, ip_protocol(transport), source, destination, correlation=correlation)

    def log_event(self, event: Event) -> None:
        """A call event as a HEP log packet (the event as JSON: its routing key as
        ``event``, then its fields), correlated with its call's messages."""
        hep = self.hep
        if hep is None or not is_call_event(event):
            return
        fields = {"event": event.routing_key, **event.model_dump(mode="json")}
        hep.log(fields, self._clock(), self.local, self.correlation_id(event.call_id))

    def correlation_id(self, call_id: str) -> str:
        """The Call-ID the caller sent, for a Call-ID seen on either side of the edge."""
        if not call_id.startswith(PREFIX):
            return call_id
        rest = call_id[len(PREFIX) :]
        if rest.startswith("~"):
            return rest[1:]
        opened = self._opened.get(call_id)
        if opened is None:
            opened = call_id
            if self._keyring is not None:
                with suppress(InvalidTokenError):  # not ours: it stays its own correlation id
                    opened = self._keyring.open(KIND_CALL_ID, rest).decode("utf-8", "replace")
            if len(self._opened) >= _MEMO_SIZE:
                self._opened.clear()
            self._opened[call_id] = opened
        return opened


def capture_of(settings: Settings, capture: CaptureSettings | None = None) -> Capture | None:
    """The capture asked for (HEP destinations, a trace ring), or None for neither.

    ``capture``: read from the environment when not given."""
    capture = capture or CaptureSettings()
    hep = mirror_of(capture)
    if hep is None and capture.trace_ring == 0:
        return None
    keys = settings.topology_keys
    return Capture(
        hep,
        TraceRing(capture.trace_ring, capture.trace_ring_bytes) if capture.trace_ring else None,
        keyring=Keyring.parse(keys.get_secret_value()) if keys is not None else None,
    )


def watch_events(
    capture: Capture | None, publisher: EventPublisher, listeners: list[Listener]
) -> None:
    """Call events as HEP logs, when asked: each event the edge publishes is shown to the
    capture, whose log packets name the worker's first SIP address as their two ends."""
    if capture is None or capture.hep is None or not capture.hep.log_events or not listeners:
        return
    capture.local = (listeners[0].host, listeners[0].port)
    publisher.observer = capture.log_event
