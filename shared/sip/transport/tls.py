"""TLS adapter (RFC 3261 §26): the TCP transport with a handshake at the start of each stream.

Everything after the handshake is the TCP transport's: the framing, the message
size and time limits, the per-source cap, connection reuse, the idle close; the
connection table is this transport's own (a TLS flow is never answered in clear).

Accepted connections are admitted (flood check, per-source cap, overall limit)
before their handshake, since a handshake costs the server far more CPU than the
client; the handshake must then end within `handshake_timeout`, so a slow or
silent peer cannot hold a slot.  Each new handshake takes the server context of
the moment (`TlsContexts`: a renewed certificate needs no restart).  Outbound,
the peer's certificate is verified against `CALLMESH_TLS_CA` (or the system's
CAs) and the name in the next hop's URI (an IP literal: its IP SAN) unless the
gateway's profile says otherwise, and a failed handshake is a `TransportError`,
so the call fails over.  A failed handshake either way is counted by reason and
logged in one line (at most one per reason every `REFUSAL_LOG_INTERVAL`, with
the number left unlogged).

Connection reuse (RFC 5923): a connection we opened serves later requests to
the same host and port (the identity we verified), and the peer's requests back
to us; one a peer opened serves its own flow, and the addresses its requests'
Vias `alias` once its certificate (`CALLMESH_TLS_VERIFY_CLIENTS`) proved it is
their host (`alias`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any, Final, cast

from shared.sip.transport.alias import alias_addresses, certificate_names
from shared.sip.transport.base import MessageHandler, TransportError, TransportLimits
from shared.sip.transport.metrics import TLS_HANDSHAKE_FAILURES
from shared.sip.transport.tcp import Peer, TcpConnection, TcpTransport
from shared.sip.transport.tls_context import (
    DEFAULT_PROFILE,
    ProfileLookup,
    TlsConfigError,
    TlsContexts,
    describe,
    failure_reason,
)

log = logging.getLogger(__name__)

MAX_ALIASES: Final = 8
"""Addresses one connection may serve besides its own: a verified peer still picks the ports."""

AliasWatcher = Callable[[Peer, int, bool], None]
"""(address, connection id, whether it now serves the address or no longer does)."""


class SecureChannel(asyncio.Transport):
    """The TLS session over an accepted connection's TCP transport, as the transport it writes to.

    `ssl.SSLObject` over memory BIOs rather than the loop's `start_tls`: the same code
    on asyncio's loop and uvloop (whose `start_tls` does not take over an accepted
    connection), and every handshake outcome is ours to time, count and log.
    """

    def __init__(self, raw: asyncio.Transport, tls: ssl.SSLObject, outgoing: ssl.MemoryBIO) -> None:
        super().__init__()
        self._raw = raw
        self._tls = tls
        self._outgoing = outgoing

    def flush(self) -> None:
        """Send what the TLS session has written (records, alerts, tickets)."""
        if self._outgoing.pending:
            data = self._outgoing.read()
            if not self._raw.is_closing():
                self._raw.write(data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._tls.write(data)
        except ssl.SSLError as error:
            raise TransportError(f"tls: {error}") from None
        self.flush()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def close(self) -> None:
        """Say close_notify, then close the TCP connection."""
        with contextlib.suppress(ssl.SSLError):  # it wants the peer's close_notify: not waited
            self._tls.unwrap()
        self.flush()
        self._raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._tls if name == "ssl_object" else self._raw.get_extra_info(name, default)


class TlsConnection(TcpConnection):
    """A connection a peer opened to a TLS listener: admitted, then a handshake bounded in
    time, then the TCP connection's framing over the decrypted bytes.  It is not open (no
    message can be written to it) until its handshake ends."""

    def __init__(self, owner: TlsTransport) -> None:
        super().__init__(owner)
        self._tls_owner = owner
        self._incoming = ssl.MemoryBIO()
        self._channel: SecureChannel | None = None
        self._tls: ssl.SSLObject | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.handshaken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.adopted:
            return
        raw = cast(asyncio.Transport, transport)
        self._transport = None  # nothing is written in clear
        owner = self._tls_owner
        try:
            context = owner.contexts.server(ask_clients=owner.asks_clients)
        except TlsConfigError as error:
            log.error("tls: %s; connection from %s:%d closed", error, *self.peer)
            raw.abort()
            return
        outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, outgoing, server_side=True)
        self._channel = SecureChannel(raw, self._tls, outgoing)
        timeout = owner.contexts.files.handshake_timeout
        self._deadline = asyncio.get_running_loop().call_later(timeout, self._late)

    def _late(self) -> None:
        self._fail(TimeoutError())

    def _fail(self, error: BaseException) -> None:
        """The handshake failed: counted, logged, the connection dropped without a word."""
        if self._deadline is not None:
            self._deadline.cancel()
        self._tls = None
        self._tls_owner.handshake_failed(error, "from", self.peer)
        if self._channel is not None:
            self._channel.flush()  # the alert, if any: the peer learns why
            self._channel.abort()

    def data_received(self, data: bytes) -> None:
        tls, channel = self._tls, self._channel
        if tls is None or channel is None:
            return
        self._incoming.write(data)
        if not self.handshaken:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                channel.flush()
                return
            except (ssl.SSLError, OSError) as error:
                self._fail(error)
                return
            self.handshaken = True
            if self._deadline is not None:
                self._deadline.cancel()
            self.identities = certificate_names(tls.getpeercert() or {})
            self._transport = channel
        self._decrypt(tls, channel)

    def _decrypt(self, tls: ssl.SSLObject, channel: SecureChannel) -> None:
        chunks = []
        closing = False
        while True:
            try:
                chunk = tls.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError as error:  # a renegotiation refused, a broken record…
                self._tls_owner.session_failed(error, self.peer)
                channel.abort()
                return
            if not chunk:  # close_notify: done once what came before it is read
                closing = True
                break
            chunks.append(chunk)
        channel.flush()
        if chunks:
            super().data_received(b"".join(chunks))
        if closing:
            channel.close()

    def close(self) -> None:
        if self._transport is None and self._channel is not None:  # mid-handshake
            self._channel.abort()
        super().close()

    def abort(self) -> None:
        if self._channel is not None:
            self._channel.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._tls is not None and not self.handshaken:  # went away in the middle
            self._fail(exc or ConnectionResetError("closed during the handshake"))
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)


class DialledTlsConnection(TcpConnection):
    """A TLS connection we opened.  In TLS 1.3 the server checks our certificate after our
    side of the handshake has ended (RFC 8446 §4.4: its alert follows our Finished), so a
    gateway refusing our certificate looks connected until its alert arrives, just after
    our first request went out.  `settled` says which it was: done once the peer has sent
    anything (it took us) or `handshake_timeout` has passed quietly; failed when the
    connection is lost before, which counts and logs as a failed handshake."""

    def __init__(self, owner: TlsTransport) -> None:
        super().__init__(owner, inbound=False)
        self._tls_owner = owner
        self.settled: asyncio.Future[None] | None = None
        self._quiet: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        tls = transport.get_extra_info("ssl_object")
        if self.adopted and tls is not None and tls.version() == "TLSv1.3":
            loop = asyncio.get_running_loop()
            self.settled = loop.create_future()
            timeout = self._tls_owner.contexts.files.handshake_timeout
            self._quiet = loop.call_later(timeout, self._settle, None)

    def _settle(self, error: BaseException | None) -> None:
        settled = self.settled
        if self._quiet is not None:
            self._quiet.cancel()
        if settled is None or settled.done():
            return
        if error is None:
            settled.set_result(None)
            return
        settled.set_exception(error)
        settled.exception()  # retrieved: each sender waiting re-raises it itself

    def data_received(self, data: bytes) -> None:
        self._settle(None)
        super().data_received(data)

    def close(self) -> None:
        self._settle(ConnectionAbortedError("closed by us"))  # not the peer's refusal
        super().close()

    def abort(self) -> None:
        self._settle(ConnectionAbortedError("closed by us"))
        super().abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Lost before the peer said anything: it refused us.  How that shows depends on the
        loop and the timing: its alert (uvloop), a reset, or a plain close (Python 3.11's
        loop reads the alert as the end of the stream)."""
        if self.settled is not None and not self.settled.done():
            error = exc or ConnectionResetError("closed by the peer before it said anything")
            self._tls_owner.handshake_failed(error, "to", self.peer)
            self._settle(error)
        super().connection_lost(exc)


class TlsTransport(TcpTransport):
    """Every TLS listener and connection of the process."""

    name = "tls"
    asks_clients = True
    """Accepted peers are asked for a certificate when `CALLMESH_TLS_VERIFY_CLIENTS` says so."""

    def __init__(
        self,
        on_message: MessageHandler,
        contexts: TlsContexts,
        limits: TransportLimits | None = None,
        profiles: ProfileLookup | None = None,
    ) -> None:
        super().__init__(on_message, limits)
        self.contexts = contexts
        self.profiles = profiles
        """The peer's `ClientProfile` (a gateway's `tls` options), asked for each new connection."""
        self.on_alias: AliasWatcher | None = None
        """Told when a connection starts (True) or stops (False) serving an alias: the edge's
        other workers send their requests for that address through this one."""

    def accepted(self) -> TcpConnection:
        return TlsConnection(self)

    def alias(self, connection: TcpConnection, message: bytes) -> None:
        """Let `connection` serve the addresses its verified peer's request asks for (RFC 5923),
        unless an open connection already serves one; at most `MAX_ALIASES` per connection."""
        for peer in alias_addresses(message, connection.peer[0], connection.identities):
            held = self._by_peer.get(peer)
            if held is connection or (held is not None and held.open):
                continue
            if len(connection.aliases) >= MAX_ALIASES:
                return
            connection.aliases.append(peer)
            self._by_peer[peer] = connection
            log.info("tls %s:%d: aliased to %s:%d (RFC 5923)", *connection.peer, *peer)
            if self.on_alias is not None:
                self.on_alias(peer, connection.id, True)

    def forget(self, connection: TcpConnection) -> None:
        if connection.adopted and connection.identities and self.on_alias is not None:
            for peer in connection.aliases:
                self.on_alias(peer, connection.id, False)
        super().forget(connection)

    async def _dial(self, peer: Peer) -> TcpConnection:
        lookup = self.profiles
        profile = (lookup(peer) if lookup is not None else None) or DEFAULT_PROFILE
        host, port = peer
        try:
            context = self.contexts.client(profile)
        except TlsConfigError as error:
            log.warning("tls: connect to %s:%d: %s", host, port, error)
            raise TransportError(f"tls connect to {host}:{port}: {error}") from None
        timeout = self.contexts.files.handshake_timeout
        try:
            async with asyncio.timeout(timeout):
                _, connection = await self._loop.create_connection(
                    lambda: DialledTlsConnection(self),
                    host,
                    port,
                    ssl=context,
                    server_hostname=profile.server_name or host,
                    ssl_handshake_timeout=2 * timeout,
                )
        except TimeoutError as error:
            self.handshake_failed(error, "to", peer)
            raise TransportError(f"tls connect to {host}:{port}: {describe(error)}") from None
        except OSError as error:
            if isinstance(error, ssl.SSLError):  # not the TCP connect before it
                self.handshake_failed(error, "to", peer)
                error_text = describe(error)
            else:
                error_text = str(error)
            raise TransportError(f"tls connect to {host}:{port}: {error_text}") from None
        return connection

    async def vetted(self, connection: TcpConnection) -> None:
        """Wait until the peer of a TLS 1.3 connection we just opened has taken our certificate
        (`DialledTlsConnection.settled`); `TransportError` if it refused it, so the request
        written on it fails over at once instead of at its failover timer."""
        settled = connection.settled if isinstance(connection, DialledTlsConnection) else None
        if settled is None or (settled.done() and settled.exception() is None):
            return
        try:
            await asyncio.shield(settled)
        except (OSError, ssl.SSLError) as error:
            host, port = connection.peer
            raise TransportError(
                f"tls to {host}:{port}: refused after the handshake: {describe(error)}"
            ) from None

    def session_failed(self, error: ssl.SSLError, peer: Peer) -> None:
        """A session cut after its handshake: one line per reason every `REFUSAL_LOG_INTERVAL`
        (a peer may open connection after connection only to break them)."""
        reason = str(error.reason or error)
        unlogged = self.throttle.due(f"session:{reason}", self.now())
        if unlogged is not None:
            log.warning(
                "tls %s:%d: %s; closing (%d more since the last such line)",
                *peer,
                reason,
                unlogged,
            )

    def handshake_failed(self, error: BaseException, direction: str, peer: Peer) -> None:
        """Count a failed handshake; log it unless its reason was logged just before."""
        reason = failure_reason(error)
        TLS_HANDSHAKE_FAILURES.labels(reason).inc()
        unlogged = self.throttle.due(f"handshake:{reason}", self.now())
        if unlogged is None:
            return
        log.warning(
            "tls %s %s:%d: %s (%d more %s failures since the last such line)",
            direction,
            *peer,
            describe(error),
            unlogged,
            reason,
        )
