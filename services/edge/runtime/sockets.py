"""The edge's SIP sockets: shared listening ports (SO_REUSEPORT) plus a private port per worker.

Why not `shared.sip.transport.hub.Transports`: the edge needs SO_REUSEPORT on
its listening sockets so several worker processes share a port, and a private
UDP port per worker to send from (see `services.edge.runtime.pool`); both are
built here from the transport layer's public `open_udp` (the one UDP socket
set-up), `TcpTransport` and `TcpConnection`.  Sending over UDP is a plain call
(no coroutine per message): it is the hot path.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from services.edge.runtime.affinity import CallAffinity
from shared.settings import ListenAddress
from shared.sip.message import peek_header
from shared.sip.transport.base import (
    Listener,
    MessageHandler,
    TransportError,
    TransportLimits,
    bind_error,
)
from shared.sip.transport.destination import Destination
from shared.sip.transport.tcp import TcpConnection, TcpTransport
from shared.sip.transport.udp import UdpEndpoint, open_udp


@dataclass(frozen=True, slots=True)
class BoundSocket:
    """A listening address and, for UDP, the private port this worker sends from."""

    listener: Listener
    private: Listener | None


class EdgeSockets:
    def __init__(self, on_message: MessageHandler, limits: TransportLimits | None = None) -> None:
        self.limits = limits or TransportLimits()
        self.on_message = on_message
        """Who gets each message; replaceable once the sockets are bound (the proxy
        needs to know the bound ports before it can take messages)."""
        self.tcp = TcpTransport(self._deliver, self.limits)
        self._udp_out: dict[bool, UdpEndpoint] = {}
        """Per address family (IPv6?), the socket UDP requests and responses leave by."""
        self._udp: list[UdpEndpoint] = []
        self._servers: list[asyncio.Server] = []
        self.bound: list[BoundSocket] = []
        self.shared_udp: list[Listener] = []
        """The UDP listeners shared with other workers, in bind order (the same in each)."""
        self.private_udp: list[Listener] = []
        """This worker's private UDP listeners, in the same order."""
        self._shared_index: dict[Listener, int] = {}
        self._private_index: dict[Listener, int] = {}
        self.affinity: CallAffinity | None = None
        """Set when there are other workers: hands a shared port's messages to the worker
        owning their call (see `services.edge.runtime.affinity`)."""

    async def open(self, addresses: list[ListenAddress], *, shared: bool) -> None:
        """Listen on every address; `shared` adds SO_REUSEPORT and a private UDP port each."""
        try:
            for address in addresses:
                await self._listen(address, shared)
        except BaseException:
            await self.close()
            raise

    async def _listen(self, address: ListenAddress, shared: bool) -> None:
        loop = asyncio.get_running_loop()
        if address.transport == "tcp":
            sock = _tcp_socket(address.host, address.port, reuse_port=shared)
            sock.listen(1024)
            server = await loop.create_server(lambda: TcpConnection(self.tcp), sock=sock)
            self._servers.append(server)
            host, port = sock.getsockname()[:2]
            self.bound.append(BoundSocket(Listener("tcp", host, port), None))
            return
        deliver = self._deliver_shared if shared else self._deliver
        endpoint = await self._udp_endpoint(address.host, address.port, deliver, reuse_port=shared)
        private = None
        if shared:
            self._shared_index[endpoint.listener] = len(self.shared_udp)
            self.shared_udp.append(endpoint.listener)
            out = await self._udp_endpoint(address.host, 0, self._deliver_private, reuse_port=False)
            self._private_index[out.listener] = len(self.private_udp)
            self.private_udp.append(out.listener)
            private = out.listener
        else:
            out = endpoint
        self._udp_out.setdefault(":" in address.host, out)
        self.bound.append(BoundSocket(endpoint.listener, private))

    async def _udp_endpoint(
        self, host: str, port: int, deliver: MessageHandler, *, reuse_port: bool
    ) -> UdpEndpoint:
        endpoint = await open_udp(host, port, deliver, self.limits, reuse_port=reuse_port)
        self._udp.append(endpoint)
        return endpoint

    def _deliver(self, data: bytes, source: Destination, listener: Listener) -> None:
        self.on_message(data, source, listener)

    def _deliver_shared(self, data: bytes, source: Destination, listener: Listener) -> None:
        affinity = self.affinity
        if affinity is None or not affinity.hand_on(data, source, self._shared_index[listener]):
            self.on_message(data, source, listener)

    def _deliver_private(self, data: bytes, source: Destination, listener: Listener) -> None:
        """A response whose top Via names another worker's port came here because its
        sender answers where a call came from (not to the Via): to the call's owner."""
        affinity = self.affinity
        if (
            affinity is None
            or not data.startswith(b"SIP/2.0 ")
            or top_via_names_port(data, listener.port)
            or not affinity.hand_on(data, source, self._private_index[listener], private=True)
        ):
            self.on_message(data, source, listener)

    def send_udp(self, data: bytes, destination: Destination) -> None:
        """Raises `TransportError` when there is no socket of the destination's family."""
        endpoint = self._udp_out.get(":" in destination.host)
        if endpoint is None:
            raise TransportError(f"no UDP socket of the address family of {destination.host}")
        endpoint.send(data, destination)

    async def send_tcp(self, data: bytes, destination: Destination) -> None:
        await self.tcp.send(data, destination)

    async def close(self) -> None:
        if self.affinity is not None:
            self.affinity.close()
            self.affinity = None
        for endpoint in self._udp:
            endpoint.close()
        self._udp.clear()
        self._udp_out.clear()
        for server in self._servers:
            server.close()
        await self.tcp.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


def top_via_names_port(data: bytes, port: int) -> bool:
    """Whether the first Via of a raw message names ``port`` (or cannot be read: then it
    is taken as ours, and the message is handled here as it would be without workers)."""
    via = peek_header(data, "via")
    if via is None:
        return True
    top = via.split(b",", 1)[0]
    return b":%d;" % port in top or top.rstrip().endswith(b":%d" % port)


def _tcp_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound listening-to-be TCP socket (UDP ones: `open_udp`, with the same options).

    Raises `BindError` naming the socket (`tcp:127.0.0.1:5060: address already in use`).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise bind_error(error, "tcp", host, port) from None
    return sock
