"""TCP adapter: listening sockets, outbound connections, and one connection table for both.

A response or a new request to a peer reuses any open connection to that peer's address,
whichever side opened it, because NATed clients can only be reached over the connection they
opened (RFC 3261 §18.2.2, RFC 5626).  Idle connections are closed after `idle_timeout`; CRLF
pings are answered with a pong (RFC 5626 §3.5.1) and count as traffic; a pong goes to
`on_pong` (the answer to our `crlf_ping`).

Against one address locking everyone out: a source may hold at most
`max_connections_per_source` connections to us, `admit` (the edge's flood detector) may
refuse a source at accept, and a message must arrive whole within `message_timeout` of its
first byte (the first one within that time of the accept), however the bytes trickle in.  A
peer that leaves more than `max_unsent` bytes of our answers unread (pings sent, pongs never
read) is cut: nothing it sends can make the process buffer more than that for it.  Refusals
and cuts are counted and logged at most once per `REFUSAL_LOG_INTERVAL` per reason, so a
flood cannot flood the log.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterator
from typing import cast

from shared.sip.framing import PING, PONG, FramingError, StreamFramer
from shared.sip.transport.base import (
    Listener,
    LogThrottle,
    MessageHandler,
    PongHandler,
    TransportError,
    TransportLimits,
    bind_error,
)
from shared.sip.transport.destination import Destination
from shared.sip.transport.metrics import TCP_REFUSED, TCP_STALLED, TCP_TIMED_OUT

log = logging.getLogger(__name__)

Peer = tuple[str, int]
_PING, _PONG = b"\r\n\r\n", b"\r\n"

Admission = Callable[[Destination], bool]
"""Asked for every connection a peer opens to us: False refuses it (closed at once)."""


class TcpConnection(asyncio.Protocol):
    """One stream: frames what arrives, writes what is sent."""

    def __init__(self, owner: TcpTransport, *, inbound: bool = True) -> None:
        self._owner = owner
        self.inbound = inbound
        """Opened by the peer (accepted), as opposed to by us."""
        self.adopted = False
        self.pending_since: float | None = None
        """When the message being received began (for one we accepted: the accept,
        until its first message); None between messages."""
        self.greeted = not inbound
        """A whole message came (keep-alives do not count: they would hold the slot)."""
        self.id = next(owner.connection_ids)
        self.listener = Listener(owner.name, "", 0)
        self.peer: Peer = ("", 0)
        self.aliases: list[Peer] = []
        """Other addresses this connection serves: one it was opened for (a name rather than
        the IP), or an RFC 5923 alias its peer asked for (`alias`)."""
        self.identities: frozenset[str] = frozenset()
        """What the peer's verified certificate names (a TLS connection it opened, when the
        listener asks for client certificates): the Via hosts it may alias (`alias`)."""
        self.source = Destination(owner.name, "", 0, self.id)
        self.last_activity = 0.0
        self._transport: asyncio.Transport | None = None
        self._framer = StreamFramer(
            max_header_size=owner.limits.max_header_size,
            max_body_size=owner.limits.max_message_size,
        )

    def serves(self, peer: Peer) -> bool:
        """Whether this connection goes to ``peer`` (its address, or one it was opened for)."""
        return peer == self.peer or peer in self.aliases

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        local_host, local_port = transport.get_extra_info("sockname")[:2]
        # The local address tells the handler which of our addresses the peer used.
        self.listener = Listener(self._owner.name, local_host, local_port)
        self.peer = (host, port)
        self.source = Destination(self._owner.name, host, port, self.id)
        self.last_activity = self._owner.now()
        if self.inbound:
            self.pending_since = self.last_activity
        if not self._owner.adopt(self):
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        now = self.last_activity = self._owner.now()
        framer = self._framer
        events = framer.feed(data)
        if self.greeted:  # before, the first-message deadline runs on from the accept
            if not framer.buffered:
                self.pending_since = None
            elif events or self.pending_since is None:
                self.pending_since = now  # the part left over begins the next message
        for event in events:
            if isinstance(event, bytes):
                if not self.greeted:
                    self.greeted = True
                    self.pending_since = now if framer.buffered else None
                if self.identities:
                    self._owner.alias(self, event)
                try:
                    self._owner.on_message(event, self.source, self.listener)
                except Exception:  # a handler bug must not take the connection down
                    log.exception("%s %s:%d: message handler failed", self._owner.name, *self.peer)
            elif event is PING and self.open and self.fits(len(_PONG)):
                self.write(_PONG)
            elif event is PONG and self._owner.on_pong is not None:
                self._owner.on_pong(self.source)  # to the keepalives: who sent the ping
            elif isinstance(event, FramingError):
                log.warning("%s %s:%d: %s; closing", self._owner.name, *self.peer, event.reason)
                self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.forget(self)

    def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing() or not self.fits(len(data)):
            name, (host, port) = self._owner.name, self.peer
            raise TransportError(f"{name} connection {self.id} to {host}:{port} is closed")
        self.last_activity = self._owner.now()
        self._transport.write(data)

    def crlf_ping(self) -> None:
        """Send RFC 5626's CRLF ping; the next lone CRLF from the peer is its pong."""
        self.write(_PING)
        self._framer.expect_pong()

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes keep the peer's unread backlog within `max_unsent`;
        if not, the connection is cut (aborted: it does not read, so no goodbye reaches it)."""
        transport = self._transport
        if transport is None:
            return False
        if transport.get_write_buffer_size() + size <= self._owner.limits.max_unsent:
            return True
        self._owner.stalled(self)
        self.abort()
        return False

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class TcpTransport:
    """Every TCP listener and connection of the process, with reuse, limits and idle close.

    Create it inside the running loop: the idle sweep is scheduled on it at once.
    The TLS transport is this one with a handshake around each stream (`tls`).
    """

    name = "tcp"
    """The transport's name in listeners, destinations and log lines."""

    def __init__(self, on_message: MessageHandler, limits: TransportLimits | None = None) -> None:
        self.on_message = on_message
        self.on_pong: PongHandler | None = None  # who awaits the pongs to its CRLF pings
        self.limits = limits or TransportLimits()
        self.admit: Admission | None = None
        self.connection_ids: Iterator[int] = itertools.count(1)
        self.listeners: list[Listener] = []
        self._servers: list[asyncio.Server] = []
        self._by_id: dict[int, TcpConnection] = {}
        self._by_peer: dict[Peer, TcpConnection] = {}
        self._per_source: dict[str, int] = {}  # open connections each source host opened to us
        self.throttle = LogThrottle()
        self._connecting: dict[Peer, asyncio.Future[TcpConnection]] = {}
        self._loop = asyncio.get_running_loop()
        self._sweeper: asyncio.TimerHandle | None = None
        self._schedule_sweep()

    def __len__(self) -> int:
        return len(self._by_id)

    def connections(self) -> list[TcpConnection]:
        """The table's connections (a copy: the caller may close them meanwhile)."""
        return list(self._by_id.values())

    def now(self) -> float:
        return self._loop.time()

    async def listen(self, host: str, port: int) -> Listener:
        """Accept connections on `host:port`; returns the listener with the bound port."""
        try:
            server = await self._loop.create_server(self.accepted, host, port, reuse_address=True)
        except OSError as error:
            raise bind_error(error, self.name, host, port) from None
        sockname = server.sockets[0].getsockname()
        listener = Listener(self.name, sockname[0], sockname[1])
        self._servers.append(server)
        self.listeners.append(listener)
        return listener

    def accepted(self) -> TcpConnection:
        """The protocol of a connection a peer opens to one of our listening sockets."""
        return TcpConnection(self)

    def connection(self, destination: Destination) -> TcpConnection | None:
        """The open connection a message to `destination` would use, if any.

        The connection id counts only on a connection to the address named beside it: ids
        restart with the process and each worker counts its own, so a flow recorded earlier
        or elsewhere may name an id that is now another peer's connection.
        """
        if destination.connection_id is not None:
            found = self._by_id.get(destination.connection_id)
            if found is not None and found.open and found.serves(destination.address):
                return found
        found = self._by_peer.get(destination.address)
        return found if found is not None and found.open else None

    async def send(self, data: bytes, destination: Destination) -> TcpConnection:
        """Write `data` on the connection for `destination`, connecting if there is none.

        Raises `TransportError` when no connection can be made (§18.2.2's last
        resort, RFC 3263 failover, is the caller's: it knows the alternatives).
        """
        connection = self.connection(destination)
        if connection is None:
            connection = await self._connect(
                (destination.host, destination.reconnect_port or destination.port)
            )
        connection.write(data)
        return connection

    async def _connect(self, peer: Peer) -> TcpConnection:
        pending = self._connecting.get(peer)
        if pending is not None:  # share one connect between concurrent senders
            return await asyncio.shield(pending)
        future: asyncio.Future[TcpConnection] = self._loop.create_future()
        self._connecting[peer] = future
        try:
            connection = await self._open(peer)
        except Exception as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: each waiter re-raises it itself
            raise
        else:
            future.set_result(connection)
            return connection
        finally:
            del self._connecting[peer]
            if not future.done():  # cancelled while connecting
                future.cancel()

    async def _open(self, peer: Peer) -> TcpConnection:
        if len(self._by_id) >= self.limits.max_connections:
            raise TransportError(f"{self.name} connection limit reached")
        connection = await self._dial(peer)
        if not connection.open:
            raise TransportError(f"{self.name} connect to {peer[0]}:{peer[1]}: refused by limits")
        if peer != connection.peer and peer not in self._by_peer:
            connection.aliases.append(peer)
            self._by_peer[peer] = connection
        return connection

    async def _dial(self, peer: Peer) -> TcpConnection:
        """A new connection to `peer`; raises `TransportError` when it cannot be made."""
        try:
            _, connection = await self._loop.create_connection(
                lambda: TcpConnection(self, inbound=False), peer[0], peer[1]
            )
        except OSError as error:
            raise TransportError(f"tcp connect to {peer[0]}:{peer[1]}: {error}") from error
        return connection

    def adopt(self, connection: TcpConnection) -> bool:
        """Register a new connection; False when it is refused (the caller drops it)."""
        host = connection.peer[0]
        refusal = self._refusal(connection) if connection.inbound else None
        if refusal is None and len(self._by_id) >= self.limits.max_connections:
            refusal = "limit"
        if refusal is not None:
            self._refused(refusal, connection)
            return False
        connection.adopted = True
        self._by_id[connection.id] = connection
        self._by_peer[connection.peer] = connection
        if connection.inbound:
            self._per_source[host] = self._per_source.get(host, 0) + 1
        return True

    def _refusal(self, connection: TcpConnection) -> str | None:
        """Why a connection a peer opened must be refused (before the overall limit)."""
        admit = self.admit
        if admit is not None and not admit(connection.source):
            return "flood"
        cap = self.limits.max_connections_per_source
        if cap and self._per_source.get(connection.peer[0], 0) >= cap:
            return "source_limit"
        return None

    def _refused(self, reason: str, connection: TcpConnection) -> None:
        """Count it; log it unless this reason was logged within `REFUSAL_LOG_INTERVAL`."""
        TCP_REFUSED.labels(reason).inc()
        unlogged = self.throttle.due(reason, self.now())
        if unlogged is None:
            return
        host, port = connection.peer
        what = {
            "flood": "the source is over the flood limit",
            "source_limit": f"{self.limits.max_connections_per_source} connections from "
            f"{host} already",
            "limit": f"connection limit ({self.limits.max_connections}) reached",
        }[reason]
        line = "%s: refused %s:%d, %s (%d more refused since the last such line)"
        log.warning(line, self.name, host, port, what, unlogged)

    def alias(self, connection: TcpConnection, message: bytes) -> None:
        """Plain TCP never aliases: RFC 5923 needs a peer whose certificate proved its Via
        (`TlsTransport.alias`); on TCP no connection has `identities`."""

    def stalled(self, connection: TcpConnection) -> None:
        """Count a connection cut for its unread backlog; log it unless one was just logged."""
        TCP_STALLED.labels(self.name).inc()
        unlogged = self.throttle.due("stalled", self.now())
        if unlogged is not None:
            log.warning(
                "%s %s:%d: over %d bytes sent and not read; cut (%d more since the last such line)",
                self.name,
                *connection.peer,
                self.limits.max_unsent,
                unlogged,
            )

    def forget(self, connection: TcpConnection) -> None:
        if not connection.adopted:
            return
        connection.adopted = False
        self._by_id.pop(connection.id, None)
        for peer in (connection.peer, *connection.aliases):
            if self._by_peer.get(peer) is connection:
                del self._by_peer[peer]
        if connection.inbound:
            host = connection.peer[0]
            left = self._per_source.get(host, 1) - 1
            if left > 0:
                self._per_source[host] = left
            else:
                self._per_source.pop(host, None)

    def _schedule_sweep(self) -> None:
        limits = self.limits
        interval = max(0.05, min(limits.idle_timeout / 4, limits.message_timeout / 4, 30.0))
        self._sweeper = self._loop.call_later(interval, self._sweep)

    def _sweep(self) -> None:
        now = self.now()
        idle = now - self.limits.idle_timeout
        late = now - self.limits.message_timeout
        cut: list[TcpConnection] = []
        for connection in list(self._by_id.values()):
            if connection.pending_since is not None and connection.pending_since <= late:
                connection.pending_since = None
                cut.append(connection)
                connection.abort()  # not close(): a peer that does not read would hold it
            elif connection.last_activity <= idle:
                log.info("%s %s:%d: idle, closing", self.name, *connection.peer)
                connection.close()
        if cut:
            TCP_TIMED_OUT.inc(len(cut))
            log.warning(
                "%s: closed %d connection(s) with no whole message within %g s, e.g. from %s:%d",
                self.name,
                len(cut),
                self.limits.message_timeout,
                *cut[0].peer,
            )
        self._schedule_sweep()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self._servers:
            server.close()
        for connection in list(self._by_id.values()):
            connection.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
