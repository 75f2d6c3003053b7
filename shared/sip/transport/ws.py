"""SIP over WebSocket (RFC 7118): the TCP (WS) and TLS (WSS) transports with an upgrade in front.

A WebRTC client (JsSIP, SIP.js) cannot open a SIP socket; it opens an HTTP
connection, upgrades it to a WebSocket with the `sip` subprotocol, and sends one
SIP message per WebSocket message, text or binary.  So a WebSocket connection is
a TCP (or, for WSS, TLS) connection of the same tables: admitted at accept (flood
check, per-source cap, overall limit), the upgrade request within the first-message
time, the message size limit (a message over it closes the connection with 1009),
the idle close.  The WebSocket framing is wsproto's (sans-IO, like h11); this
module only feeds it bytes and carries out its events.

What differs from a SIP stream: no Content-Length framing (a WebSocket message is
the SIP message), no CRLF keep-alives (WebSocket pings instead: the edge pings a
peer silent for `ping_interval`, its pong is traffic, so a live browser is never
closed as idle), and no outbound connections: a browser is a client, reached
only over the connection it opened (its Contact's host is `.invalid`).
"""

from __future__ import annotations

import logging
from typing import Final, Protocol, cast

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from shared.sip.transport.base import MessageHandler, TransportError, TransportLimits
from shared.sip.transport.metrics import WS_CLOSED
from shared.sip.transport.tcp import Peer, TcpConnection, TcpTransport
from shared.sip.transport.tls import TlsConnection, TlsTransport
from shared.sip.transport.tls_context import TlsContexts
from shared.sip.transport.ws_policy import (
    SUBPROTOCOL,
    Refusal,
    WebSocketPolicy,
    not_websocket,
)

log = logging.getLogger(__name__)

_NO_OUTBOUND: Final = "a WebSocket peer is reached over the connection it opened only"


class _WebSocketTable(Protocol):
    websocket: WebSocketPolicy


class WsConnection(TcpConnection):
    """A connection a peer opened to a WS listener: the upgrade, then SIP messages."""

    def __init__(self, owner: TcpTransport) -> None:
        super().__init__(owner)
        self._policy = cast(_WebSocketTable, owner).websocket
        self._ws = WSConnection(ConnectionType.SERVER)
        self.upgraded = False
        self._parts: list[bytes] = []
        self._size = 0
        self._pinged = False

    @property
    def open(self) -> bool:
        """Messages may be written only once the upgrade is done (not to an HTTP client)."""
        return self.upgraded and super().open

    def data_received(self, data: bytes) -> None:
        now = self.last_activity = self._owner.now()
        self._pinged = False
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                self._event(event, now)
                if not super().open:  # closed by what it sent: the rest is not read
                    return
        except LocalProtocolError as error:  # more bytes after the closing handshake
            log.info("%s %s:%d: %s; closing", self._owner.name, *self.peer, error)
            super().close()
        except RemoteProtocolError as error:
            hint = error.event_hint
            if self.upgraded or hint is None or not hasattr(hint, "status_code"):
                self._close_for("protocol", 1002, str(error))
                return
            headers = getattr(hint, "headers", [])
            self._refuse(not_websocket(hint.status_code, str(error), headers))

    def _event(self, event: Event, now: float) -> None:
        if isinstance(event, Request):
            refusal = self._policy.judge(event)
            if refusal is not None:
                self._refuse(refusal)
                return
            self._raw(self._ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
            self.upgraded = True
            self.greeted = True  # the upgrade was its first message: its slot is earned
            self.pending_since = None
        elif isinstance(event, (TextMessage, BytesMessage)):
            self._part(event, now)
        elif isinstance(event, Ping):
            self._raw(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            if self._ws.state is ConnectionState.REMOTE_CLOSING:  # the peer says goodbye
                self._raw(self._ws.send(event.response()))
                super().close()
            else:  # wsproto found the peer's frames broken (its close is ours to send)
                self._close_for("protocol", event.code, event.reason or "broken frames")

    def _part(self, event: TextMessage | BytesMessage, now: float) -> None:
        """A piece of a message (a frame, or part of one); the message is handled when whole."""
        data = event.data
        piece = data.encode() if isinstance(data, str) else bytes(data)
        self._size += len(piece)
        limit = self._owner.limits.max_message_size
        if self._size > limit:
            self._close_for("too_big", CloseReason.MESSAGE_TOO_BIG, f"a message over {limit} bytes")
            return
        self._parts.append(piece)
        if not event.message_finished:
            if self.pending_since is None:
                self.pending_since = now  # the whole message is due within message_timeout
            return
        message = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        self.pending_since = None
        if not message.strip():  # a keep-alive some clients send anyway: nothing to answer
            return
        try:
            self._owner.on_message(message, self.source, self.listener)
        except Exception:  # a handler bug must not take the connection down
            log.exception("%s %s:%d: message handler failed", self._owner.name, *self.peer)

    def _refuse(self, refusal: Refusal) -> None:
        """Answer the upgrade with its 4xx, once, and close."""
        self._policy.refused(refusal, self._owner.name, self.peer, self._owner.now())
        self._raw(refusal.response())
        super().close()

    def _close_for(self, reason: str, code: int, text: str) -> None:
        WS_CLOSED.labels(reason).inc()
        log.warning("%s %s:%d: %s; closing (%d)", self._owner.name, *self.peer, text, code)
        self._parts.clear()
        if self._ws.state is ConnectionState.OPEN:
            self._raw(self._ws.send(CloseConnection(code=code, reason=text[:100])))
        super().close()

    def _raw(self, data: bytes) -> None:
        """Write protocol bytes (handshake, pong, close) without counting them as traffic (nor
        past the unread backlog: a ping flood that reads no pong is cut, see `fits`)."""
        transport = self._transport
        if data and transport is not None and not transport.is_closing() and self.fits(len(data)):
            transport.write(data)

    def ping(self) -> None:
        """Ask a silent peer for a pong (once per silence): its answer is traffic."""
        if self.upgraded and not self._pinged and self._ws.state is ConnectionState.OPEN:
            self._pinged = True
            self._raw(self._ws.send(Ping(payload=b"callmesh")))

    def write(self, data: bytes) -> None:
        """One SIP message as one WebSocket message: text when it is UTF-8 (what browsers'
        SIP stacks expect), binary otherwise (RFC 7118 §5.1 allows either)."""
        if not self.upgraded or self._ws.state is not ConnectionState.OPEN:
            raise TransportError(
                f"{self._owner.name} connection {self.id} to {self.peer[0]}:{self.peer[1]} "
                "is not an open WebSocket"
            )
        try:
            frame = self._ws.send(TextMessage(data=data.decode()))
        except UnicodeDecodeError:
            frame = self._ws.send(BytesMessage(data=data))
        except LocalProtocolError as error:
            raise TransportError(f"{self._owner.name}: {error}") from None
        super().write(frame)

    def close(self) -> None:
        """Say goodbye in WebSocket terms (1001: going away, as on an idle close or shutdown)."""
        if self.upgraded and self._ws.state is ConnectionState.OPEN:
            self._raw(self._ws.send(CloseConnection(code=CloseReason.GOING_AWAY)))
        super().close()


class WssConnection(TlsConnection, WsConnection):
    """A WS connection inside a TLS session: `TlsConnection` decrypts, `WsConnection` reads."""


class WsTransport(TcpTransport):
    """Every WS listener and connection of the process."""

    name = "ws"

    def __init__(
        self,
        on_message: MessageHandler,
        limits: TransportLimits | None = None,
        websocket: WebSocketPolicy | None = None,
    ) -> None:
        super().__init__(on_message, limits)
        self.websocket = websocket or WebSocketPolicy()

    def accepted(self) -> TcpConnection:
        return WsConnection(self)

    async def _dial(self, peer: Peer) -> TcpConnection:
        raise TransportError(f"{self.name} to {peer[0]}:{peer[1]}: {_NO_OUTBOUND}")

    def _sweep(self) -> None:
        ping_connections(self)
        super()._sweep()


class WssTransport(TlsTransport):
    """Every WSS listener and connection: TLS's certificate, handshake bound and counters."""

    name = "wss"
    asks_clients = False  # a browser would show its user a certificate picker

    def __init__(
        self,
        on_message: MessageHandler,
        contexts: TlsContexts,
        limits: TransportLimits | None = None,
        websocket: WebSocketPolicy | None = None,
    ) -> None:
        super().__init__(on_message, contexts, limits)
        self.websocket = websocket or WebSocketPolicy()

    def accepted(self) -> TcpConnection:
        return WssConnection(self)

    async def _dial(self, peer: Peer) -> TcpConnection:
        raise TransportError(f"{self.name} to {peer[0]}:{peer[1]}: {_NO_OUTBOUND}")

    def _sweep(self) -> None:
        ping_connections(self)
        super()._sweep()


def ping_connections(table: WsTransport | WssTransport) -> None:
    """Ping every WebSocket of `table` silent for its policy's ping interval."""
    silent = table.now() - table.websocket.ping_interval
    for connection in table.connections():
        if isinstance(connection, WsConnection) and connection.last_activity <= silent:
            connection.ping()
