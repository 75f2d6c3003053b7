"""What the transport tests share: a message collector and sample messages."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY

from shared.sip.transport.base import Listener
from shared.sip.transport.datagrams import SO_TIMESTAMPNS
from shared.sip.transport.destination import Destination
from shared.sip.transport.tcp import TcpTransport

OPTIONS = (
    b"OPTIONS sip:edge.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKtest1;rport\r\n"
    b"Call-ID: transport-test\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)
OK = b"SIP/2.0 200 OK\r\nCSeq: 1 OPTIONS\r\nContent-Length: 4\r\n\r\nbody"


def bound(host: str = "127.0.0.1", *, stamped: bool = True) -> socket.socket:
    """A non-blocking UDP socket on `host` (any port), with room for a burst, stamping what
    it receives with the kernel's time (SO_TIMESTAMPNS) unless told not to."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    if stamped:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class Inbox:
    """A message handler that queues what it receives (and a datagram's receive time)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Destination, Listener]] = asyncio.Queue()
        self.received_at: list[float] = []

    def __call__(
        self, data: bytes, source: Destination, listener: Listener, received_at: float | None = None
    ) -> None:
        if received_at is not None:
            self.received_at.append(received_at)
        self.queue.put_nowait((data, source, listener))

    async def get(self) -> tuple[bytes, Destination, Listener]:
        return await asyncio.wait_for(self.queue.get(), timeout=5)


FLOOD_BOUND = 16 * 1024 * 1024
"""Bytes a flood test sends at most before it gives up on being cut (a bound, not a measure)."""


def small_send_buffers(transport: TcpTransport) -> None:
    """Give the connections `transport` accepts from now on a small kernel send buffer (they
    inherit the listening socket's), so what they leave unread piles up in the process, past
    its limit, after kilobytes of a flood rather than the megabytes the kernel would hold."""
    for server in transport._servers:
        for sock in server.sockets:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


async def flood_unread(
    port: int,
    greeting: bytes,
    unit: bytes,
    *,
    context: ssl.SSLContext | None = None,
    greeted: Callable[[asyncio.StreamReader], Awaitable[None]] | None = None,
) -> int:
    """Send `greeting`, then `unit` over and over without reading a byte of the answers,
    until the server cuts the connection; returns the bytes sent by then (`FLOOD_BOUND` when
    it never did: the server kept buffering its answers, as much as the peer sent)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # our side reads little
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname="127.0.0.1" if context else None
    )
    writer.write(greeting)
    if greeted is not None:
        await greeted(reader)
    batch = unit * (65536 // len(unit))
    sent = 0
    try:
        async with asyncio.timeout(20):
            while sent < FLOOD_BOUND:
                writer.write(batch)
                await writer.drain()
                sent += len(batch)
    except (ConnectionError, ssl.SSLError):
        return sent
    except TimeoutError:
        return FLOOD_BOUND
    finally:
        writer.transport.abort()
    return sent


def stalled(transport: str) -> float:
    """`callmesh_sip_tcp_stalled_total` of `transport`: connections cut for their backlog."""
    sample = "callmesh_sip_tcp_stalled_total"
    return REGISTRY.get_sample_value(sample, {"transport": transport}) or 0.0
