"""What the asyncio adapters share: the message callback, listener identity, limits."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from shared.settings import Settings
from shared.sip.framing import DEFAULT_MAX_HEADER_SIZE
from shared.sip.message import MAX_MESSAGE_SIZE
from shared.sip.transport.destination import Destination


@dataclass(frozen=True, slots=True)
class Listener:
    """A local socket messages arrive on (port as bound, so port 0 resolves)."""

    transport: str
    host: str
    port: int


MessageHandler = Callable[[bytes, Destination, Listener], None]
"""Called with each received message's bytes, where it came from (for a stream,
`connection_id` set) and the socket it arrived on.  Parsing is left to the
handler so it can decide how much of a message it needs to read."""

PongHandler = Callable[[Destination], None]
"""Told of each CRLF pong (RFC 5626 §4.4.1) a stream brings, with its source (`connection_id`
set): the answer to a ping we sent, which only the one who sent it can match."""

DatagramHandler = Callable[[bytes, Destination, Listener, float], None]
"""A UDP socket's `MessageHandler`: also given when the kernel received the datagram, on
the event loop's clock (`loop.time()`), so a loaded loop's lag does not show in what is
timed from it (a call's start, answer and end: `shared.sip.transport.udp`)."""


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Bounds that keep one peer from exhausting the process."""

    max_connections: int = 4096
    """Open TCP connections of the process, both directions (Kamailio's `tcp_max_connections`)."""
    max_connections_per_source: int = 128
    """Connections one source IP may hold open to us (0: no cap), so one address cannot
    take every slot of `max_connections`; a NATed office shares one address, hence not 8."""
    max_message_size: int = MAX_MESSAGE_SIZE
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    idle_timeout: float = 300.0
    """Seconds without traffic after which a stream connection is closed."""
    message_timeout: float = 10.0
    """Seconds a stream peer has to complete a message from its first byte, and a peer
    that connected to us to send its first one (Kamailio's `tcp_msg_read_timeout` and
    `tcp_msg_data_timeout`): traffic does not extend it, so a trickle is cut."""
    socket_buffer: int = 4 * 1024 * 1024
    """SO_RCVBUF/SO_SNDBUF asked for on UDP sockets (the kernel may grant less)."""
    udp_coalesce: float = 0.0
    """Seconds a UDP socket is not read after a burst that emptied it (0: read at once), so
    the datagrams that come meanwhile wake the process once (`CALLMESH_UDP_COALESCE_MS`)."""
    max_unsent: int = 1024 * 1024
    """Bytes a stream peer may leave unread in our buffer (beyond the kernel's) before its
    connection is cut: a peer that sends pings or requests and never reads the answers
    would otherwise grow the process's memory by as much as it sends."""


def limits_of(settings: Settings) -> TransportLimits:
    """The `CALLMESH_TCP_*` settings, and `CALLMESH_UDP_COALESCE_MS`, as transport limits."""
    return TransportLimits(
        max_connections=settings.tcp_max_connections,
        max_connections_per_source=settings.tcp_max_connections_per_source,
        message_timeout=settings.tcp_message_timeout,
        udp_coalesce=settings.udp_coalesce_ms / 1000,
    )


def tls_limits_of(settings: Settings) -> TransportLimits:
    """The limits of TLS connections: the `CALLMESH_TCP_*` ones, with the `CALLMESH_TLS_*`
    count and idle time (a TLS connection costs more memory, and a phone keeps it longer)."""
    return TransportLimits(
        max_connections=settings.tls_max_connections,
        max_connections_per_source=settings.tcp_max_connections_per_source,
        message_timeout=settings.tcp_message_timeout,
        idle_timeout=settings.tls_idle_timeout,
    )


class TransportError(OSError):
    """A message could not be handed to the network (no socket for it, connect failed)."""


class OversizeDatagramError(TransportError):
    """A message larger than a UDP datagram can carry; the text names the peer."""


class BindError(OSError):
    """A listening socket could not be bound; its text names the socket, as
    `udp:127.0.0.1:5060: address already in use` (errno kept)."""

    def __str__(self) -> str:
        return str(self.strerror)


REFUSAL_LOG_INTERVAL: Final = 10.0
"""Seconds between two log lines of one reason (a refusal, a failed handshake, a cut)."""
MAX_THROTTLED_REASONS: Final = 1024
"""Reasons a `LogThrottle` remembers at most: past it, it forgets them all (each logs again
once), so reasons named after peers cannot grow its memory without bound."""


@dataclass(slots=True)
class LogThrottle:
    """One log line per reason at most every `REFUSAL_LOG_INTERVAL`, so a flood cannot flood
    the log; the next line says how many went unlogged in between."""

    _quiet_until: dict[str, float] = field(default_factory=dict)
    _unlogged: dict[str, int] = field(default_factory=dict)

    def due(self, reason: str, now: float) -> int | None:
        """None when `reason` was logged just before (counted as unlogged); else the number
        unlogged since its last line (the caller logs now)."""
        if now < self._quiet_until.get(reason, 0.0):
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return None
        if len(self._quiet_until) >= MAX_THROTTLED_REASONS:
            self._quiet_until.clear()
            self._unlogged.clear()
        self._quiet_until[reason] = now + REFUSAL_LOG_INTERVAL
        return self._unlogged.pop(reason, 0)


def unlogged_note(unlogged: int) -> str:
    """What a line `LogThrottle.due` let through adds: how many went unlogged before it."""
    return f" ({unlogged} more since the last such line)" if unlogged else ""


def bind_error(error: OSError, transport: str, host: str, port: int) -> BindError:
    """`error` from binding `transport:host:port`, with the socket named."""
    what = os.strerror(error.errno) if error.errno else str(error)
    address = f"[{host}]" if ":" in host else host
    return BindError(error.errno, f"{transport}:{address}:{port}: {what[:1].lower()}{what[1:]}")
