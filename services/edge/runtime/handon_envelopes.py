"""The envelopes in which a worker hands a message on to a sibling (`affinity.CallAffinity`).

Why a module of its own: the envelope's layout is one job, read and written on every hand-on,
and its own file keeps it apart from the sockets that carry it.  A UDP message's envelope
carries its listener, its source and when the kernel received it; a stream message's, its
connection and where to reach its peer again.
"""

from __future__ import annotations

import struct
from typing import Final

from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination

_HEADER = struct.Struct("!HHBd")
"""Envelope: listener index, source port, source host length, when the kernel received the
datagram (the loop's clock: CLOCK_MONOTONIC, every worker's); then host, then the message."""
_STREAM_HEADER = struct.Struct("!HHIHHBB")
"""A stream's envelope: kind and transport, peer port, connection id, the port to connect
to if the connection is gone (0: the peer's), listener port, the peer's and the listener's
host lengths; then both hosts, then the message."""
STREAMS: Final = ("tcp", "tls", "ws", "wss")


def pack(listener_index: int, source: Destination, data: bytes, received_at: float) -> bytes:
    host = source.host.encode()
    return _HEADER.pack(listener_index, source.port, len(host), received_at) + host + data


def pack_stream(kind: int, source: Destination, listener: Listener | None, data: bytes) -> bytes:
    host, local = source.host.encode(), (listener.host if listener else "").encode()
    header = _STREAM_HEADER.pack(
        kind | STREAMS.index(source.transport),
        source.port,
        source.connection_id or 0,
        source.reconnect_port or 0,
        listener.port if listener else 0,
        len(host),
        len(local),
    )
    return header + host + local + data


def unpack_stream(envelope: bytes) -> tuple[int, Destination, Listener, bytes]:
    kind, port, connection_id, reconnect, local_port, length, local_length = (
        _STREAM_HEADER.unpack_from(envelope)
    )
    transport = STREAMS[kind & 0xFF]
    start = _STREAM_HEADER.size
    host = envelope[start : start + length].decode()
    local = envelope[start + length : start + length + local_length].decode()
    source = Destination(transport, host, port, connection_id, reconnect_port=reconnect or None)
    return (
        kind,
        source,
        Listener(transport, local, local_port),
        envelope[start + length + local_length :],
    )


def unpack(envelope: bytes) -> tuple[int, Destination, bytes, float]:
    listener_index, port, length, received_at = _HEADER.unpack_from(envelope)
    start = _HEADER.size
    host = envelope[start : start + length].decode()
    return listener_index, Destination("udp", host, port), envelope[start + length :], received_at
