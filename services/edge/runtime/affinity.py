"""Every UDP message of a call is handled by one worker, whichever worker the kernel gave it.

Why: SO_REUSEPORT hashes the sender's address and port, so a trunk that sends every call
from one socket (a carrier, an SBC, an Asterisk box) would load one worker while the others
idle, and an edge could use one core per peer. Instead, a worker that receives a message on
a shared port hands it to the worker its Call-ID hashes to, over a Unix socket (unless
`runtime.steering` had the kernel give it there). The Call-ID: an INVITE, its CANCEL and
ACK, and the dialog's later BYE and re-INVITEs all carry it, so the worker that forwarded
the INVITE also forwards the BYE, and a peer that sends its responses to the address a call
came from (instead of the top Via) still reaches the worker holding the transaction.
Responses reach their worker by its private port (see ``services.edge.runtime.pool``); one
that arrives at a private port its top Via does not name (such a peer, after a worker joined
or left and a call's messages met two workers) is handed to the call's owner too.

Connections (TCP, TLS, WS, WSS) belong to the worker that accepted or opened
them, yet a phone on one must be reachable whichever worker routes its call: a
message arriving on a connection is handed to its Call-ID's owner like a UDP one
(with the connection's id), and a message for a connection another worker holds
is handed to that worker to write (`hand_write`). Which worker holds a
connection is in its id: each worker numbers its connections
`index + k * WORKER_SLOTS` (`connection_ids`), so a flow token recorded by any
worker names it.

A TLS connection whose verified peer asked for an RFC 5923 alias (`tls.alias`)
serves that address for every worker: the holding worker tells the others
(`announce_alias`), and their requests for the address are written by it.

Unreadable Call-ID (its 400), owner not listening (restarting): handled where it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from services.edge import metrics
from shared.counters import IntCounter
from shared.sip.message import MAX_MESSAGE_SIZE, peek_call_id
from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination

log = logging.getLogger("callmesh.edge")

_HEADER = struct.Struct("!HHBd")
"""Envelope: listener index, source port, source host length, when the kernel received the
datagram (the loop's clock: CLOCK_MONOTONIC, every worker's); then host, then the message."""
_STREAM_HEADER = struct.Struct("!HHIHHBB")
"""A stream's envelope: kind and transport, peer port, connection id, the port to connect
to if the connection is gone (0: the peer's), listener port, the peer's and the listener's
host lengths; then both hosts, then the message."""
_KIND = struct.Struct("!H")
"""The first field of every envelope: a listener index, or a stream's kind."""
_MAX_ENVELOPE = MAX_MESSAGE_SIZE + 1024
_PRIVATE = 0x8000
"""Listener index flag: the message came to a private port, not a shared one."""
_STREAM = 0x4000
"""A message that came on a connection (the rest of the first field: its transport)."""
_WRITE = 0x2000
"""A message to write on a connection of the receiving worker."""
_ALIAS = 0x1000
"""The sender's connection (the envelope's id) now serves an RFC 5923 alias (its address)."""
_UNALIAS = 0x0800
"""…and no longer does (closed)."""
CONTROL: Final = 0x0400
"""A control frame: a request to run here, or an answer (`runtime.worker_control`)."""
_NOTICES = _STREAM | _WRITE | _ALIAS | _UNALIAS | CONTROL
STREAMS: Final = ("tcp", "tls", "ws", "wss")
WORKER_SLOTS: Final = 64
"""Connection ids step by this; an id modulo it is the worker holding the connection."""

Deliver = Callable[[bytes, Destination, Listener, float | None], None]
"""Takes a message to handle here, with when the kernel received it on the loop's clock (a
datagram's stamp), or None (a stream's message: timed when it is handled)."""
Write = Callable[[bytes, Destination], None]
"""Writes a message a sibling handed on, on this worker's connection for the destination."""


def connection_ids(index: int) -> Iterator[int]:
    """The connection ids worker `index` gives: each names the worker (`connection_owner`)."""
    return itertools.count(WORKER_SLOTS + index, WORKER_SLOTS)


def connection_owner(connection_id: int) -> int:
    return connection_id % WORKER_SLOTS


@dataclass(frozen=True, slots=True)
class WorkerGroup:
    """This process's place among the edge's workers, and where their sockets live."""

    index: int
    count: int
    directory: Path
    steering: tuple[int, ...] = ()
    """Kernel steering's socket maps, one per shared UDP port (`runtime.steering`)."""

    def relay_path(self, index: int) -> str:
        return str(self.directory / f"relay-w{index}.sock")

    def metrics_path(self, index: int) -> str:
        return str(self.directory / f"metrics-w{index}.sock")

    def trace_path(self, index: int) -> str:
        return str(self.directory / f"trace-w{index}.sock")

    def owner(self, call_id: bytes) -> int:
        return zlib.crc32(call_id) % self.count

    def instance_of(self, instance: str, index: int) -> str:
        """Worker `index`'s instance name, from this worker's `instance`, as the pool names
        them (worker 0 keeps the edge's name, worker n adds `-wn`)."""
        base = instance.removesuffix(f"-w{self.index}") if self.index else instance
        return f"{base}-w{index}" if index else base

    def flow_instance(self, instance: str, source: Destination) -> str:
        """The instance holding `source`'s connection (this one for a datagram)."""
        if source.connection_id is None:
            return instance
        return self.instance_of(instance, connection_owner(source.connection_id))


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


class CallAffinity:
    """Hands shared-port UDP messages to the worker owning their Call-ID; takes its own.

    Why SOCK_SEQPACKET connections, not datagrams to a bound path: a Unix datagram
    socket queues at most ``net.unix.max_dgram_qlen`` messages (10 by default), so a
    burst would overflow it; a connection's queue is bounded by its buffer in bytes,
    and each message stays one message. A message that does not fit is dropped, as a
    full UDP socket would drop it (its sender retransmits).
    """

    def __init__(
        self,
        group: WorkerGroup,
        listeners: list[Listener],
        deliver: Deliver,
        private: list[Listener] | None = None,
        write: Write | None = None,
    ) -> None:
        self.group = group
        self._listeners = listeners
        """The shared listening sockets, in the same order in every worker."""
        self._private = private or []
        """This worker's private ports, in the same order as ``listeners``."""
        self._deliver = deliver
        self._write = write
        self._server: socket.socket | None = None
        self._peers: dict[int, socket.socket] = {}
        """Connections to the other workers, opened on first use."""
        self._accepted: set[socket.socket] = set()
        self.aliases: dict[tuple[str, str, int], int] = {}
        """(transport, host, port) → the sibling's connection aliased to that address."""
        self.control: Callable[[bytes], None] = lambda _frame: None
        """Takes a sibling's control frame (`WorkerControl.receive`); until set, dropped."""

    async def start(self) -> None:
        path = self.group.relay_path(self.group.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a worker that died
        server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        server.bind(path)
        server.listen(64)
        server.setblocking(False)
        self._server = server
        asyncio.get_running_loop().add_reader(server.fileno(), self._accept)

    def hand_on(
        self,
        data: bytes,
        source: Destination,
        listener_index: int,
        received_at: float,
        *,
        private: bool = False,
    ) -> bool:
        """``True`` when another worker owns the message's call (and has it, or it was
        dropped for want of room); ``False``: handle it here. ``private``: it came to
        this worker's private port (the owner takes it as come to its own).  The kernel's
        `received_at` goes with it: the owner times the call by it, not by the hand-on."""
        owner = self._other_owner(data)
        if owner is None:
            return False
        envelope = pack(listener_index | (_PRIVATE if private else 0), source, data, received_at)
        return self._send(owner, envelope)

    def hand_on_stream(self, data: bytes, source: Destination, listener: Listener) -> bool:
        """``True`` when another worker owns the Call-ID of a message that came on one of this
        worker's connections (it handles it, and hands its answers back to write)."""
        owner = self._other_owner(data)
        if owner is None:
            return False
        return self._send(owner, pack_stream(_STREAM, source, listener, data))

    def _other_owner(self, data: bytes) -> int | None:
        """The worker owning the message's call when it is another one; None: handle it here."""
        call_id = peek_call_id(data)
        if not call_id or self._server is None:
            return None
        owner = self.group.owner(call_id)
        return None if owner == self.group.index else owner

    def hand_write(self, data: bytes, destination: Destination) -> bool:
        """``True`` when another worker holds the connection `destination` names and has
        the message to write (or it was dropped); ``False``: write it here."""
        if destination.connection_id is None or self._server is None:
            return False
        owner = connection_owner(destination.connection_id)
        if owner == self.group.index or owner >= self.group.count:
            return False
        envelope = pack_stream(_WRITE, destination, None, data)
        return self._send(owner, envelope, metrics.STREAM_WRITES_HANDED_ON)

    def announce_alias(
        self, transport: str, peer: tuple[str, int], connection_id: int, serves: bool
    ) -> None:
        """Tell every other worker that our connection now serves `peer` (or no longer does)."""
        if self._server is None:
            return
        notice = Destination(transport, peer[0], peer[1], connection_id)
        envelope = pack_stream(_ALIAS if serves else _UNALIAS, notice, None, b"")
        for owner in range(self.group.count):
            if owner != self.group.index:
                self._send(owner, envelope, None)

    def send_control(self, owner: int, frame: bytes) -> bool:
        return self._send(owner, frame, None)  # False: `owner` is not listening

    def _aliased(self, kind: int, notice: Destination) -> None:
        key = (notice.transport, notice.host, notice.port)
        if kind & _ALIAS and notice.connection_id:
            if len(self.aliases) >= 100_000 and key not in self.aliases:
                self.aliases.clear()  # bounded: a verified peer has at most 8 each
            self.aliases[key] = notice.connection_id
        elif self.aliases.get(key) == notice.connection_id:  # not a newer one's
            del self.aliases[key]

    def _send(
        self, owner: int, envelope: bytes, counter: IntCounter | None = metrics.HANDED_ON
    ) -> bool:
        for _attempt in range(2):  # a second time on a fresh connection if the old one died
            peer = self._peers.get(owner) or self._connect(owner)
            if peer is None:
                metrics.HANDED_ON_UNREACHABLE.value += 1
                return False  # the owner is not there (restarting): handle it here
            try:
                peer.send(envelope)
            except BlockingIOError:
                metrics.HANDED_ON_DROPPED.value += 1
                return True
            except OSError:
                self._forget(owner)
                continue
            if counter is not None:
                counter.value += 1
            return True
        return False

    def _connect(self, owner: int) -> socket.socket | None:
        peer = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            peer.connect(self.group.relay_path(owner))
        except OSError:
            peer.close()
            return None
        peer.setblocking(False)
        self._peers[owner] = peer
        return peer

    def _forget(self, owner: int) -> None:
        peer = self._peers.pop(owner, None)
        if peer is not None:
            peer.close()

    def _accept(self) -> None:
        assert self._server is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, _ = self._server.accept()
            except (BlockingIOError, InterruptedError):
                return
            connection.setblocking(False)
            self._accepted.add(connection)
            loop.add_reader(connection.fileno(), self._readable, connection)

    def _readable(self, connection: socket.socket) -> None:
        while True:
            try:
                envelope = connection.recv(_MAX_ENVELOPE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                envelope = b""
            if not envelope:  # the sibling closed (stopped, or restarted)
                self._drop(connection)
                return
            try:
                if (kind := _KIND.unpack_from(envelope)[0]) & _NOTICES:
                    (self.control if kind & CONTROL else self._stream)(envelope)
                    continue
                listener_index, source, data, received_at = unpack(envelope)
                if listener_index & _PRIVATE:
                    listener = self._private[listener_index & ~_PRIVATE]
                else:
                    listener = self._listeners[listener_index]
            except (struct.error, UnicodeDecodeError, IndexError) as error:
                log.warning("edge: unreadable message from a sibling worker (%s)", error)
                continue
            try:
                self._deliver(data, source, listener, received_at)
            except Exception:  # a handler bug must not stop the socket
                log.exception("edge: handling a message from a sibling worker failed")

    def _stream(self, envelope: bytes) -> None:
        """A stream message a sibling handed on: to handle here, or to write here."""
        try:
            kind, source, listener, data = unpack_stream(envelope)
        except (struct.error, UnicodeDecodeError, IndexError) as error:
            log.warning("edge: unreadable message from a sibling worker (%s)", error)
            return
        try:
            if kind & (_ALIAS | _UNALIAS):
                self._aliased(kind, source)
            elif not kind & _WRITE:
                self._deliver(data, source, listener, None)
            elif self._write is not None:
                self._write(data, source)
        except Exception:  # a handler bug must not stop the socket
            log.exception("edge: handling a message from a sibling worker failed")

    def _drop(self, connection: socket.socket) -> None:
        asyncio.get_running_loop().remove_reader(connection.fileno())
        self._accepted.discard(connection)
        connection.close()

    def close(self) -> None:
        if self._server is None:
            return
        for connection in list(self._accepted):
            self._drop(connection)
        for owner in list(self._peers):
            self._forget(owner)
        asyncio.get_running_loop().remove_reader(self._server.fileno())
        self._server.close()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.group.relay_path(self.group.index))
