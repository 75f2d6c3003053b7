"""Every UDP message of a call is handled by one worker, whichever worker the kernel gave it.

Why: SO_REUSEPORT hashes the sender's address and port, so a trunk that sends every
call from one socket (a carrier, an SBC, an Asterisk box) would load one worker while
the others idle, and an edge could use one core per peer. Instead, a worker that
receives a message on a shared port hands it to the worker its Call-ID hashes to,
over a Unix datagram socket of that worker. The Call-ID, not the Request-URI: an
INVITE, its CANCEL and ACK, and the dialog's later BYE and re-INVITEs all carry it,
so the worker that forwarded the INVITE also forwards the BYE, and a peer that sends
its responses to the address a call came from (instead of the top Via) still reaches
the worker holding the transaction. Responses reach their worker by its private
port (see ``services.edge.workers``) and are never handed on; TCP messages stay with
the connection's worker.

A message without a readable Call-ID is handled where it arrived (it gets its 400
there). If the owner's socket is missing or full (a worker restarting, overload),
the message is handled where it arrived too: as without affinity.
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

from prometheus_client import Counter

from shared.sip.transport.base import Listener, MessageHandler
from shared.sip.transport.destination import Destination

log = logging.getLogger("callmesh.edge")

HANDED_ON = Counter(
    "callmesh_edge_handed_on", "UDP messages handed to the worker that owns their Call-ID"
)

_HEADER = struct.Struct("!HHB")
"""Envelope: listener index, source port, source host length; then host, then the message."""
_MAX_ENVELOPE = 70_000


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


def call_id_of(data: bytes) -> bytes | None:
    """The Call-ID of a raw SIP message (any of its spellings), or ``None`` if it has none.

    The usual spelling is found with one ``bytes.find``; compact (``i:``), other cases
    and whitespace before the colon go through a line scan of the header section.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
        if end < 0:
            end = len(data)
    start = data.find(b"\nCall-ID:", 0, end)
    if start >= 0:
        start += 9
        stop = data.find(b"\n", start, end + 1)
        value = data[start : end if stop < 0 else stop].strip()
        return value or None
    for line in data[:end].split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"call-id", b"i"):
            return value.strip() or None
    return None


def pack(listener_index: int, source: Destination, data: bytes) -> bytes:
    host = source.host.encode()
    return _HEADER.pack(listener_index, source.port, len(host)) + host + data


def unpack(envelope: bytes) -> tuple[int, Destination, bytes]:
    listener_index, port, length = _HEADER.unpack_from(envelope)
    start = _HEADER.size
    host = envelope[start : start + length].decode()
    return listener_index, Destination("udp", host, port), envelope[start + length :]


class CallAffinity:
    """Hands shared-port UDP messages to the worker owning their Call-ID; takes its own."""

    def __init__(
        self, group: WorkerGroup, listeners: list[Listener], deliver: MessageHandler
    ) -> None:
        self.group = group
        self._listeners = listeners
        """The shared listening sockets, in the same order in every worker."""
        self._deliver = deliver
        self._socket: socket.socket | None = None

    async def start(self) -> None:
        path = self.group.relay_path(self.group.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by a worker that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        self._socket = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def hand_on(self, data: bytes, source: Destination, listener_index: int) -> bool:
        """``True`` when another worker owns the message's call and now has it."""
        call_id = call_id_of(data)
        if call_id is None or self._socket is None:
            return False
        owner = self.group.owner(call_id)
        if owner == self.group.index:
            return False
        try:
            self._socket.sendto(pack(listener_index, source, data), self.group.relay_path(owner))
        except OSError:  # the owner is restarting or overloaded: handle it here
            return False
        HANDED_ON.inc()
        return True

    def _readable(self) -> None:
        assert self._socket is not None
        while True:
            try:
                envelope = self._socket.recv(_MAX_ENVELOPE)
            except (BlockingIOError, InterruptedError):
                return
            try:
                listener_index, source, data = unpack(envelope)
                listener = self._listeners[listener_index]
            except (struct.error, UnicodeDecodeError, IndexError) as error:
                log.warning("edge: unreadable message from a sibling worker (%s)", error)
                continue
            try:
                self._deliver(data, source, listener)
            except Exception:  # a handler bug must not stop the socket
                log.exception("edge: handling a message from a sibling worker failed")

    def close(self) -> None:
        if self._socket is None:
            return
        asyncio.get_running_loop().remove_reader(self._socket.fileno())
        self._socket.close()
        self._socket = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.group.relay_path(self.group.index))
