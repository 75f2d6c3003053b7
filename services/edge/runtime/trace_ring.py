"""The last messages a worker received and sent, kept for `GET /v1/calls/{call_id}/trace`.

A bounded ring (`CALLMESH_TRACE_RING` messages; 0 keeps none, and at most
`CALLMESH_TRACE_RING_BYTES` of them): the oldest message leaves as a new one
comes, so a call is found while its messages are among the last N and not
after.  The byte bound is against anyone who can send a datagram: every
message received is kept, before any check, and 10,000 of 64 KB each
would pin 650 MB per worker.  The hot path only appends the bytes; a look-up
(an operator's quick look) reads the Call-ID of each entry not read before and
keeps it on the entry, so the ring is read once, whatever the queries.  HEP and Homer are the
archive; this is for a glance without them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.sip.message import peek_call_id


@dataclass(slots=True, init=False)
class TraceEntry:
    """One message as it was on the wire, with its call's correlation id (not frozen, and its
    ``__init__`` written out: one is made per message, and a dataclass's generated one runs
    as Python even compiled, several times the cost)."""

    time: float
    """Wall-clock seconds."""
    direction: str
    """``in`` (received) or ``out`` (sent)."""
    transport: str
    source: tuple[str, int]
    destination: tuple[str, int]
    data: bytes
    call_id: str | None
    """Read from `data` at the first look-up (``""``: not SIP)."""
    correlation_id: str

    def __init__(  # noqa: PLR0917 — the dataclass's own signature
        self,
        time: float,
        direction: str,
        transport: str,
        source: tuple[str, int],
        destination: tuple[str, int],
        data: bytes,
        call_id: str | None = None,
        correlation_id: str = "",
    ) -> None:
        self.time = time
        self.direction = direction
        self.transport = transport
        self.source = source
        self.destination = destination
        self.data = data
        self.call_id = call_id
        self.correlation_id = correlation_id

    def as_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "direction": self.direction,
            "transport": self.transport,
            "source": f"{_host(self.source[0])}:{self.source[1]}",
            "destination": f"{_host(self.destination[0])}:{self.destination[1]}",
            "call_id": self.call_id,
            "correlation_id": self.correlation_id,
            "message": self.data.decode("utf-8", "replace"),
        }


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _same(call_id: str) -> str:
    return call_id


class TraceRing:
    def __init__(self, size: int, max_bytes: int = 32 * 1024 * 1024) -> None:
        self._entries: deque[TraceEntry] = deque(maxlen=size)
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        """The kept messages' bytes."""
        self.correlate: Callable[[str], str] = _same
        """A leg's Call-ID to its call's correlation id (the capture's, with the topology keys)."""

    def add(self, entry: TraceEntry) -> None:
        entries = self._entries
        if len(entries) == self.size:
            self.bytes -= len(entries[0].data)  # the one `append` drops
        entries.append(entry)
        self.bytes += len(entry.data)
        while self.bytes > self.max_bytes:
            self.bytes -= len(entries.popleft().data)

    def of_call(self, call_id: str) -> list[TraceEntry]:
        """Every kept message of the call named by its caller's or any leg's Call-ID, in order."""
        entries = list(self._entries)
        for entry in entries:
            if entry.call_id is None:
                raw = peek_call_id(entry.data)
                entry.call_id = raw.strip().decode("utf-8", "replace") if raw is not None else ""
                entry.correlation_id = self.correlate(entry.call_id) if raw is not None else ""
        correlations = {e.correlation_id for e in entries if e.call_id == call_id}
        correlations.add(self.correlate(call_id))
        return [e for e in entries if e.call_id and e.correlation_id in correlations]
