"""The edge's SIP sockets: shared listening ports (SO_REUSEPORT) plus a private port per worker.

Why not `shared.sip.transport.hub.Transports`: the edge needs SO_REUSEPORT on
its listening sockets so several worker processes share a port, and a private
UDP port per worker to send from (see `services.edge.runtime.pool`); both are
built here from the transport layer's public `open_udp` (the one UDP socket
set-up), `TcpTransport`, `TlsTransport` and the WebSocket ones (their `accepted`
connections on our own listening sockets).  Sending over UDP is a plain call (no coroutine per
message): it is the hot path.  A TLS listener's certificate is reloaded on
SIGHUP (and when its files change, see `tls_context`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass, replace
from typing import Final

from services.edge.keepalive.ping import CALL_ID_MARK
from services.edge.runtime.affinity import CallAffinity, Deliver, connection_ids
from services.edge.runtime.capture import Capture
from shared.settings import ListenAddress
from shared.sip.message import peek_header
from shared.sip.transport.base import (
    DatagramHandler,
    Listener,
    TransportError,
    TransportLimits,
    bind_error,
)
from shared.sip.transport.destination import Destination
from shared.sip.transport.tcp import TcpTransport
from shared.sip.transport.tls import TlsTransport
from shared.sip.transport.tls_context import ProfileLookup, TlsContexts, TlsFiles
from shared.sip.transport.udp import UdpEndpoint, open_udp
from shared.sip.transport.ws import WssTransport, WsTransport
from shared.sip.transport.ws_policy import WebSocketPolicy

log = logging.getLogger("callmesh.edge")


@dataclass(frozen=True, slots=True)
class BoundSocket:
    """A listening address and, for UDP, the private port this worker sends from."""

    listener: Listener
    private: Listener | None


class EdgeSockets:
    def __init__(
        self,
        on_message: Deliver,
        limits: TransportLimits | None = None,
        *,
        tls: TlsFiles | None = None,
        tls_limits: TransportLimits | None = None,
        tls_profiles: ProfileLookup | None = None,
        websocket: WebSocketPolicy | None = None,
    ) -> None:
        self.limits = limits or TransportLimits()
        self.on_message = on_message
        """Who gets each message; replaceable once the sockets are bound (the proxy
        needs to know the bound ports before it can take messages).  A UDP message comes
        with the kernel's receive time (`shared.sip.transport.udp`), a stream's with None."""
        deliver = self._deliver_stream
        self.tcp = TcpTransport(deliver, self.limits)
        contexts = TlsContexts(tls or TlsFiles())
        self.tls = TlsTransport(deliver, contexts, tls_limits or self.limits, tls_profiles)
        self.tls.on_alias = self._announce_alias
        websocket = websocket or WebSocketPolicy()
        self.ws = WsTransport(deliver, self.limits, websocket)
        self.wss = WssTransport(deliver, contexts, tls_limits or self.limits, websocket)
        self.streams: dict[str, TcpTransport] = {
            table.name: table for table in (self.tcp, self.tls, self.ws, self.wss)
        }
        """Each stream transport's connection table, by name."""
        self._reload_on_hangup = False
        self._udp_out: dict[bool, UdpEndpoint] = {}
        """Per address family (IPv6?), the socket UDP requests and responses leave by."""
        self._udp: list[UdpEndpoint] = []
        self._servers: list[asyncio.Server] = []
        self.bound: list[BoundSocket] = []
        self.shared_udp: list[Listener] = []
        """The UDP listeners shared with other workers, in bind order (the same in each)."""
        self.private_udp: list[Listener] = []
        """This worker's private UDP listeners, in the same order."""
        self._shared_index: dict[tuple[str, int], int] = {}
        self._private_index: dict[tuple[str, int], int] = {}
        """Each UDP listener's place in its list, by host and port (UDP's alone): a tuple of
        them hashes in C, where the listener's generated hash ran as Python per message."""
        self.affinity: CallAffinity | None = None
        """Set when there are other workers: hands a shared port's messages, and those that
        come on a connection, to the worker owning their call, and a message for another
        worker's connection to that worker (see `services.edge.runtime.affinity`)."""
        self._writes: set[asyncio.Task[None]] = set()
        self.capture: Capture | None = None
        """Set when capture is on: sees every message delivered and sent (`runtime.capture`)."""

    def number_connections(self, worker: int) -> None:
        """Give connection ids naming worker `worker` (before the first connection)."""
        for table in self.streams.values():
            table.connection_ids = connection_ids(worker)

    async def open(self, addresses: list[ListenAddress], *, shared: bool) -> None:
        """Listen on every address; `shared` adds SO_REUSEPORT and a private UDP port each."""
        try:
            for address in addresses:
                await self._listen(address, shared)
        except BaseException as error:  # closed outside the block: compiled, no await in one
            failure = error
        else:
            return
        await self.close()
        raise failure

    async def _listen(self, address: ListenAddress, shared: bool) -> None:
        loop = asyncio.get_running_loop()
        if address.transport != "udp":
            stream = self.streams[address.transport]
            if isinstance(stream, TlsTransport):
                stream.contexts.server()  # no certificate: refused now, not at the first peer
                self._watch_hangup(loop)
            sock = _tcp_socket(address.host, address.port, reuse_port=shared, name=stream.name)
            sock.listen(1024)
            server = await loop.create_server(stream.accepted, sock=sock)
            self._servers.append(server)
            host, port = sock.getsockname()[:2]
            self.bound.append(BoundSocket(Listener(stream.name, host, port), None))
            return
        deliver = self._deliver_shared if shared else self.deliver
        endpoint = await self._udp_endpoint(address.host, address.port, deliver, reuse_port=shared)
        private = None
        if shared:
            self._shared_index[_udp_key(endpoint.listener)] = len(self.shared_udp)
            self.shared_udp.append(endpoint.listener)
            out = await self._udp_endpoint(address.host, 0, self._deliver_private, reuse_port=False)
            self._private_index[_udp_key(out.listener)] = len(self.private_udp)
            self.private_udp.append(out.listener)
            private = out.listener
        else:
            out = endpoint
        self._udp_out.setdefault(":" in address.host, out)
        self.bound.append(BoundSocket(endpoint.listener, private))

    def take_longest_wait(self) -> float:
        """The longest a datagram waited in any UDP socket's buffer since the last call."""
        return max((endpoint.take_longest_wait() for endpoint in self._udp), default=0.0)

    def take_standing_wait(self) -> float:
        """The longest among the UDP sockets of the shortest a datagram waited in its buffer
        since the last call: a standing queue in one socket is the worker falling behind,
        whatever the others hold."""
        return max((endpoint.take_shortest_wait() for endpoint in self._udp), default=0.0)

    @property
    def shared_udp_sockets(self) -> list[socket.socket]:
        """The sockets of `shared_udp`, in its order (for `runtime.steering`)."""
        return [e.socket for e in self._udp if _udp_key(e.listener) in self._shared_index]

    async def _udp_endpoint(
        self, host: str, port: int, deliver: DatagramHandler, *, reuse_port: bool
    ) -> UdpEndpoint:
        endpoint = await open_udp(host, port, deliver, self.limits, reuse_port=reuse_port)
        self._udp.append(endpoint)
        return endpoint

    def deliver(
        self, data: bytes, source: Destination, listener: Listener, received_at: float | None
    ) -> None:
        """Every message this worker handles passes here, also one another worker handed on."""
        capture = self.capture
        if capture is not None:
            capture.received(
                data, source.transport, (source.host, source.port), (listener.host, listener.port)
            )
        self.on_message(data, source, listener, received_at)

    def _deliver_stream(self, data: bytes, source: Destination, listener: Listener) -> None:
        """A keepalive's answer stays: this worker pings the flows it holds (`keepalives`)."""
        affinity = self.affinity
        if (
            affinity is None
            or (data.startswith(b"SIP/2.0 ") and CALL_ID_MARK in data)
            or not affinity.hand_on_stream(data, source, listener)
        ):
            self.deliver(data, source, listener, None)

    def _deliver_shared(
        self, data: bytes, source: Destination, listener: Listener, received_at: float
    ) -> None:
        affinity = self.affinity
        if affinity is None or not affinity.hand_on(
            data, source, self._shared_index[listener.host, listener.port], received_at
        ):
            self.deliver(data, source, listener, received_at)

    def _deliver_private(
        self, data: bytes, source: Destination, listener: Listener, received_at: float
    ) -> None:
        """A response whose top Via names another worker's port came here because its
        sender answers where a call came from (not to the Via): to the call's owner."""
        affinity = self.affinity
        if (
            affinity is None
            or not data.startswith(b"SIP/2.0 ")
            or top_via_names_port(data, listener.port)
            or not affinity.hand_on(
                data,
                source,
                self._private_index[listener.host, listener.port],
                received_at,
                private=True,
            )
        ):
            self.deliver(data, source, listener, received_at)

    def send_udp(self, data: bytes, destination: Destination) -> None:
        """Raises `TransportError` when there is no socket of the destination's family."""
        endpoint = self._udp_out.get(":" in destination.host)
        if endpoint is None:
            raise TransportError(f"no UDP socket of the address family of {destination.host}")
        endpoint.send(data, destination)
        capture = self.capture
        if capture is not None:
            local = endpoint.listener
            capture.sent(
                data, "udp", (local.host, local.port), (destination.host, destination.port)
            )

    def _watch_hangup(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._reload_on_hangup:
            loop.add_signal_handler(signal.SIGHUP, self.tls.contexts.reload)
            self._reload_on_hangup = True

    def stream(self, transport: str) -> TcpTransport:
        """The connection table of a stream transport; `TransportError` for one we lack."""
        table = self.streams.get(transport)
        if table is None:
            raise TransportError(f"no {transport} transport")
        return table

    async def send_stream(self, data: bytes, destination: Destination) -> None:
        """Write on the destination's connection, handing it to the worker that holds it
        (which captures it, as it knows the connection's ports)."""
        affinity = self.affinity
        if affinity is not None:
            if destination.connection_id is None and affinity.aliases:
                destination = self._sibling_alias(affinity, destination)
            if affinity.hand_write(data, destination):
                return
        await self._send_on_stream(data, destination)

    def _sibling_alias(self, affinity: CallAffinity, destination: Destination) -> Destination:
        """The destination with a sibling's connection aliased to its address (RFC 5923), unless
        this worker has an open connection there itself."""
        held = affinity.aliases.get((destination.transport, destination.host, destination.port))
        if held is None or self.stream(destination.transport).connection(destination) is not None:
            return destination
        return replace(destination, connection_id=held)

    def _announce_alias(self, peer: tuple[str, int], connection_id: int, serves: bool) -> None:
        if self.affinity is not None:
            self.affinity.announce_alias(self.tls.name, peer, connection_id, serves)

    async def _send_on_stream(self, data: bytes, destination: Destination) -> None:
        """Write, capture, then (a TLS 1.3 connection just opened) wait for its peer to have
        taken our certificate: a refusal is a `TransportError` like a failed connect."""
        stream = self.stream(destination.transport)
        connection = await stream.send(data, destination)
        capture = self.capture
        if capture is not None:
            local = connection.listener
            capture.sent(data, local.transport, (local.host, local.port), connection.peer)
        if isinstance(stream, TlsTransport):
            await stream.vetted(connection)

    def write_handed(self, data: bytes, destination: Destination) -> None:
        """A sibling's message for a connection of ours: written (or, gone, connected anew
        as the sibling would have); a failure is logged, the sibling's transaction times out."""
        task = asyncio.get_running_loop().create_task(self._write(data, destination))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, data: bytes, destination: Destination) -> None:
        try:
            await self._send_on_stream(data, destination)
        except TransportError as error:
            log.warning("edge: a sibling worker's message not sent: %s", error)

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
        for table in self.streams.values():
            await table.close()
        if self._reload_on_hangup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._reload_on_hangup = False
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


def top_via_names_port(data: bytes, port: int) -> bool:
    """Whether the first Via of a raw message names ``port`` (or cannot be read: then it
    is taken as ours, and the message is handled here as it would be without workers).

    Every response to a private port passes here.  Most have their Via as the line after
    the status line, where `peek_header` would find it too: that line is read in place
    (a find, no copy); any other layout takes `peek_header`.  The marks are made once per
    port, not formatted per message."""
    marks = _PORT_MARKS.get(port)
    if marks is None:
        marks = _PORT_MARKS[port] = (b":%d;" % port, b":%d" % port)
    start = data.find(b"\n") + 1
    if start > 0 and data.startswith(b"Via: ", start):
        start += 5
        stop = data.find(b"\n", start)
    else:
        via = peek_header(data, "via")
        if via is None:
            return True
        data, start, stop = via, 0, len(via)
    if stop < 0:
        stop = len(data)
    comma = data.find(b",", start, stop)
    if comma >= 0:
        stop = comma
    if data.find(marks[0], start, stop) >= 0:
        return True
    while stop > start and data[stop - 1] in _TRAILING_SPACE:
        stop -= 1
    return data.endswith(marks[1], start, stop)


_PORT_MARKS: Final[dict[int, tuple[bytes, bytes]]] = {}
"""A port's ``:port;`` and ``:port`` (a worker has a private port or two)."""

_TRAILING_SPACE: Final = frozenset(b" \t\n\r\x0b\x0c")
"""What `bytes.rstrip` strips (as `peek_header`'s value is stripped)."""


def _tcp_socket(host: str, port: int, *, reuse_port: bool, name: str) -> socket.socket:
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
        raise bind_error(error, name, host, port) from None
    return sock


def _udp_key(listener: Listener) -> tuple[str, int]:
    return listener.host, listener.port
