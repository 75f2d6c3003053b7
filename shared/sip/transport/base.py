"""What the asyncio adapters share: the message callback, listener identity, limits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Bounds that keep one peer from exhausting the process."""

    max_connections: int = 4096
    max_message_size: int = MAX_MESSAGE_SIZE
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    idle_timeout: float = 300.0
    """Seconds without traffic after which a stream connection is closed."""
    socket_buffer: int = 4 * 1024 * 1024
    """SO_RCVBUF/SO_SNDBUF asked for on UDP sockets (the kernel may grant less)."""


class TransportError(OSError):
    """A message could not be handed to the network (no socket for it, connect failed)."""
