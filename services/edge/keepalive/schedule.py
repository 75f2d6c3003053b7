"""When to ping which binding, and which bindings stopped answering: sans-IO.

A router forgets a UDP mapping after 30 to 120 s of silence; a phone that
registered for an hour behind it cannot be called after that unless someone
sends through the mapping meanwhile.  The edge that took the REGISTER holds
the flow (the binding's ``edge``), so it alone pings: no binding gets one ping
per node.

Each binding is pinged once per ``interval``, at a phase of its own (a stable
hash of its AoR and contact), so 100,000 bindings registered in the same
second are pinged spread evenly over the interval rather than all at once,
and a restarted edge keeps the same phases.  A binding that answered nothing
(any response counts: a 4xx is the phone saying it is there) for ``timeout``
is reported once as unreachable and no longer pinged; the registrar removes
it.  Times are the caller's (a monotonic clock); the runtime sends.
"""

from __future__ import annotations

import enum
import heapq
import zlib
from dataclasses import dataclass, field

from services.edge.proxy.nat import is_unreachable
from shared.registrar.model import Location
from shared.sip.errors import SipParseError
from shared.sip.uri import SipUri, parse_uri

Key = tuple[str, str]
"""A binding: (AoR, contact)."""


class Ping(enum.Enum):
    OPTIONS = "options"
    CRLF = "crlf"
    """RFC 5626 §4.4.1 double-CRLF, for a connection whose phone registered with outbound."""


@dataclass(slots=True)
class Watched:
    """A binding this edge pings, and what it heard from it."""

    location: Location
    ping: Ping
    due: float
    silent_since: float | None = None
    """When the first ping since the last answer went out; None while the phone answers."""


@dataclass(frozen=True, slots=True)
class Tick:
    """What is due now: bindings to ping, and bindings that stayed silent too long."""

    pings: list[Watched] = field(default_factory=list)
    unreachable: list[Location] = field(default_factory=list)


def needs_keepalive(location: Location, instance: str) -> bool:
    """Whether this edge (``instance``) pings the binding: it holds its flow, and the flow is a
    connection or sits behind NAT (the REGISTER came from elsewhere than its Contact says)."""
    if location.edge != instance:
        return False
    if location.transport != "udp":
        return True
    try:
        contact, received = parse_uri(location.contact), parse_uri(location.received)
    except SipParseError:
        return True
    if not isinstance(contact, SipUri) or not isinstance(received, SipUri):
        return True
    if is_unreachable(contact.host):
        return True
    return (contact.host, contact.port or 5060) != (received.host, received.port or 5060)


def ping_of(location: Location) -> Ping:
    """CRLF on a connection the phone registered with outbound (``reg-id``), else OPTIONS."""
    if location.transport != "udp" and ";reg-id=" in location.params.lower():
        return Ping.CRLF
    return Ping.OPTIONS


def phase_of(key: Key, interval: float) -> float:
    """The binding's offset within each interval, the same on every edge and after restarts."""
    digest = zlib.crc32(f"{key[0]} {key[1]}".encode())
    return digest / 2**32 * interval


class KeepaliveSchedule:
    """The bindings this edge pings, in order of their next ping."""

    def __init__(self, interval: float, timeout: float) -> None:
        if interval <= 0 or timeout <= 0:
            raise ValueError("keepalive interval and timeout must be positive")
        self.interval = interval
        self.timeout = timeout
        self._watched: dict[Key, Watched] = {}
        self._heap: list[tuple[float, Key]] = []

    def __len__(self) -> int:
        return len(self._watched)

    def watch(self, location: Location, now: float) -> None:
        """Ping ``location`` from its next phase on (a refresh keeps the schedule and the silence:
        a REGISTER through the mapping proves the phone is there, so it counts as an answer)."""
        key = (location.aor, location.contact)
        known = self._watched.get(key)
        if known is not None:
            known.location, known.ping, known.silent_since = location, ping_of(location), None
            return
        due = self._next_phase(key, now)
        self._watched[key] = Watched(location, ping_of(location), due)
        heapq.heappush(self._heap, (due, key))

    def _next_phase(self, key: Key, now: float) -> float:
        """The binding's first phase after ``now`` (``now`` itself when it falls on it)."""
        return now + (phase_of(key, self.interval) - now) % self.interval

    def forget(self, aor: str, contact: str) -> None:
        """The binding is gone (removed, expired, moved to another edge): no more pings."""
        self._watched.pop((aor, contact), None)

    def answered(self, aor: str, contact: str) -> None:
        """Any response (or a CRLF pong) came from the binding: it is there."""
        known = self._watched.get((aor, contact))
        if known is not None:
            known.silent_since = None

    def next_due(self) -> float | None:
        """When `tick` next has something to do (None: nothing watched)."""
        while self._heap:
            due, key = self._heap[0]
            known = self._watched.get(key)
            if known is not None and known.due == due:
                return due
            heapq.heappop(self._heap)
        return None

    def tick(self, now: float) -> Tick:
        """Everything due at ``now``: each binding is pinged (and rescheduled one interval on), or
        reported unreachable and dropped when it has been silent for ``timeout``."""
        tick = Tick()
        while self._heap and self._heap[0][0] <= now:
            due, key = heapq.heappop(self._heap)
            known = self._watched.get(key)
            if known is None or known.due != due:
                continue
            if known.silent_since is not None and now - known.silent_since >= self.timeout:
                del self._watched[key]
                tick.unreachable.append(known.location)
                continue
            if known.silent_since is None:
                known.silent_since = now
            known.due = due + self.interval
            if known.due <= now:  # the caller fell behind: no burst of catch-up pings
                phase = self._next_phase(key, now)
                known.due = phase if phase > now else phase + self.interval
            heapq.heappush(self._heap, (known.due, key))
            tick.pings.append(known)
        return tick
