"""UDP adapter: one `asyncio.DatagramProtocol` per listening socket.

Each datagram is one message, handed on as bytes.  Receive and send buffers
are enlarged because a SIP burst (a registration storm, a carrier failover)
arrives faster than one event-loop turn drains it, and the kernel drops
what does not fit.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Final, cast

from shared.sip.transport.base import (
    Listener,
    MessageHandler,
    OversizeDatagramError,
    TransportError,
    TransportLimits,
    bind_error,
)
from shared.sip.transport.destination import Destination
from shared.sip.transport.metrics import UDP_OVERSIZE

log = logging.getLogger(__name__)

MAX_DATAGRAM_PAYLOAD: Final = 65507
"""65,535 less the IPv4 and UDP headers."""
MAX_DATAGRAM_PAYLOAD_V6: Final = 65527


class UdpEndpoint(asyncio.DatagramProtocol):
    """A bound UDP socket that receives messages and sends to any address."""

    def __init__(self, on_message: MessageHandler, limits: TransportLimits) -> None:
        self._on_message = on_message
        self._limits = limits
        self._transport: asyncio.DatagramTransport | None = None
        self.listener = Listener("udp", "", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not every loop's datagram transport subclasses DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)
        host, port = transport.get_extra_info("sockname")[:2]
        self.listener = Listener("udp", host, port)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) > self._limits.max_message_size:
            log.warning("udp: dropped %d-byte datagram from %s:%s", len(data), *addr[:2])
            return
        if data[:1] == b"\r" and not data.strip():
            return  # a CRLF keep-alive; UDP keep-alives need no answer
        source = Destination("udp", str(addr[0]), int(addr[1]))
        try:
            self._on_message(data, source, self.listener)
        except Exception:  # a handler bug must not stop the socket
            log.exception("udp %s:%d: message handler failed", source.host, source.port)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from earlier sends surface here; the transaction timers handle the loss.
        log.info("udp %s:%d: %s", self.listener.host, self.listener.port, exc)

    def send(self, data: bytes, destination: Destination) -> None:
        """Send one datagram; the host must be an IP literal (DNS is the caller's, RFC 3263).

        Raises `OversizeDatagramError` (counted) for more than a datagram holds: the
        kernel's EMSGSIZE would only reach `error_received`, without the peer.
        """
        if self._transport is None or self._transport.is_closing():
            raise TransportError(f"udp socket {self.listener.host}:{self.listener.port} is closed")
        host = destination.host
        if len(data) > MAX_DATAGRAM_PAYLOAD:
            limit = MAX_DATAGRAM_PAYLOAD_V6 if ":" in host else MAX_DATAGRAM_PAYLOAD
            if len(data) > limit:
                kind = "response" if data.startswith(b"SIP/") else "request"
                UDP_OVERSIZE.labels(kind).inc()
                raise OversizeDatagramError(
                    f"udp: {len(data)}-byte {kind} to {host}:{destination.port} is over the "
                    f"{limit} bytes a datagram holds"
                )
        self._transport.sendto(data, (host, destination.port))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_udp(
    host: str,
    port: int,
    on_message: MessageHandler,
    limits: TransportLimits | None = None,
    *,
    reuse_port: bool = False,
) -> UdpEndpoint:
    """Bind a UDP socket on `host:port` (IPv4 or IPv6 literal) and start receiving.

    The one UDP socket set-up of every SIP process.  `reuse_port`: SO_REUSEPORT,
    so several processes share the port and the kernel spreads senders over them
    (the edge's workers).
    """
    limits = limits or TransportLimits()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, limits.socket_buffer)
            except OSError as error:  # best effort: the kernel caps it anyway
                log.info("udp: cannot set socket buffer: %s", error)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise bind_error(error, "udp", host, port) from None
    loop = asyncio.get_running_loop()
    _, endpoint = await loop.create_datagram_endpoint(
        lambda: UdpEndpoint(on_message, limits), sock=sock
    )
    return endpoint
