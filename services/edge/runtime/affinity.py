"""Every UDP message of a call is handled by one worker, whichever worker the kernel gave it.

Why: SO_REUSEPORT hashes the sender's address and port, so a trunk that sends every
call from one socket (a carrier, an SBC, an Asterisk box) would load one worker while
the others idle, and an edge could use one core per peer. Instead, a worker that
receives a message on a shared port hands it to the worker its Call-ID hashes to,
over a Unix socket of that worker. The Call-ID, not the Request-URI: an
INVITE, its CANCEL and ACK, and the dialog's later BYE and re-INVITEs all carry it,
so the worker that forwarded the INVITE also forwards the BYE, and a peer that sends
its responses to the address a call came from (instead of the top Via) still reaches
the worker holding the transaction. Responses reach their worker by its private
port (see ``services.edge.runtime.pool``); one that arrives at a private port its top Via
does not name (such a peer, after a worker joined or left and a call's messages
met two workers) is handed to the call's owner too. TCP messages stay with the
connection's worker.

A message without a readable Call-ID is handled where it arrived (it gets its 400
there), and so is one whose owner is not listening (a worker restarting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from services.edge import metrics
from shared.sip.message import peek_header
from shared.sip.transport.base import Listener, MessageHandler
from shared.sip.transport.destination import Destination

log = logging.getLogger("callmesh.edge")

_HEADER = struct.Struct("!HHB")
"""Envelope: listener index, source port, source host length; then host, then the message."""
_MAX_ENVELOPE = 70_000
_PRIVATE = 0x8000
"""Listener index flag: the message came to a private port, not a shared one."""


@dataclass(frozen=True, slots=True)
class WorkerGroup:
    """This process's place among the edge's workers, and where their sockets live."""

    index: int
    count: int
    directory: Path

    def relay_path(self, index: int) -> str:
        return str(self.directory / f"relay-w{index}.sock")

    def metrics_path(self, index: int) -> str:
        return str(self.directory / f"metrics-w{index}.sock")

    def owner(self, call_id: bytes) -> int:
        return zlib.crc32(call_id) % self.count


def pack(listener_index: int, source: Destination, data: bytes) -> bytes:
    host = source.host.encode()
    return _HEADER.pack(listener_index, source.port, len(host)) + host + data


def unpack(envelope: bytes) -> tuple[int, Destination, bytes]:
    listener_index, port, length = _HEADER.unpack_from(envelope)
    start = _HEADER.size
    host = envelope[start : start + length].decode()
    return listener_index, Destination("udp", host, port), envelope[start + length :]


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
        deliver: MessageHandler,
        private: list[Listener] | None = None,
    ) -> None:
        self.group = group
        self._listeners = listeners
        """The shared listening sockets, in the same order in every worker."""
        self._private = private or []
        """This worker's private ports, in the same order as ``listeners``."""
        self._deliver = deliver
        self._server: socket.socket | None = None
        self._peers: dict[int, socket.socket] = {}
        """Connections to the other workers, opened on first use."""
        self._accepted: set[socket.socket] = set()

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
        self, data: bytes, source: Destination, listener_index: int, *, private: bool = False
    ) -> bool:
        """``True`` when another worker owns the message's call (and has it, or it was
        dropped for want of room); ``False``: handle it here. ``private``: it came to
        this worker's private port (the owner takes it as come to its own)."""
        call_id = peek_header(data, "call-id")
        if not call_id or self._server is None:
            return False
        owner = self.group.owner(call_id)
        if owner == self.group.index:
            return False
        envelope = pack(listener_index | (_PRIVATE if private else 0), source, data)
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
            metrics.HANDED_ON.value += 1
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
                listener_index, source, data = unpack(envelope)
                if listener_index & _PRIVATE:
                    listener = self._private[listener_index & ~_PRIVATE]
                else:
                    listener = self._listeners[listener_index]
            except (struct.error, UnicodeDecodeError, IndexError) as error:
                log.warning("edge: unreadable message from a sibling worker (%s)", error)
                continue
            try:
                self._deliver(data, source, listener)
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
