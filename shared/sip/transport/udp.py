"""UDP adapter: one non-blocking socket per listening address, read by the endpoint itself.

Each datagram is one message, handed on as bytes with the time the kernel
received it.  Why not `asyncio.DatagramProtocol`: its transports (asyncio's
and uvloop's) give no ancillary data, so a message could only be timed when
the event loop got to it, and on a loaded machine that lag (hundreds of ms)
showed in call durations.  Here each wake-up reads up to `BURST` datagrams with
the kernel's `SO_TIMESTAMPNS` stamps (`datagrams.read_datagrams`: `recvmmsg` in C,
16 a system call, in the compiled build), so a burst costs one wake-up, not one
per datagram; and what its handling sends goes out after it (`HeldSends`), by `sendmmsg`
(`datagrams.send_datagrams`: up to 64 a system call, in the compiled build).
With a rest set (`TransportLimits.udp_coalesce`), a socket whose burst emptied it is not
read for that long, so what comes meanwhile is one burst too: fewer wake-ups, each one
costing far more than its code on a shared machine (cold caches), for that much latency.
Receive and send buffers are enlarged because a SIP burst (a registration
storm, a carrier failover) arrives faster than one event-loop turn drains it,
and the kernel drops what does not fit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
from typing import Final, Protocol

from shared.clock import wall_offset
from shared.sip.transport.base import (
    DatagramHandler,
    Listener,
    LogThrottle,
    OversizeDatagramError,
    TransportError,
    TransportLimits,
    bind_error,
    unlogged_note,
)
from shared.sip.transport.datagrams import SO_TIMESTAMPNS, Outgoing, read_datagrams, send_datagrams
from shared.sip.transport.destination import Destination
from shared.sip.transport.metrics import UDP_OVERSIZE

log = logging.getLogger(__name__)

MAX_DATAGRAM_PAYLOAD: Final = 65507
"""65,535 less the IPv4 and UDP headers."""
MAX_DATAGRAM_PAYLOAD_V6: Final = 65527
BURST: Final = 64
"""Datagrams read per wake-up at most, so a flood on one socket cannot starve the others."""
FLUSH_EVERY: Final = 16
"""Datagrams of a burst handled between two flushes of what they sent: how long an answer
waits for the rest of its burst is bounded by 16 messages' handling (~2 ms on a loaded edge)."""
MAX_QUEUED_AGE: Final = 5.0
"""Seconds a datagram's stamp may lie before the wake-up that reads it: an older one (a
wall clock stepped between the kernel's stamp and our reading, or a loop that late) counts
as that old, and one after the reading as read then."""


class UdpEndpoint:
    """A bound UDP socket that receives messages and sends to any address."""

    def __init__(
        self, sock: socket.socket, on_datagram: DatagramHandler, limits: TransportLimits
    ) -> None:
        self._sock = sock
        self._on_datagram = on_datagram
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._throttle = LogThrottle()
        """A datagram flood (oversized, or sends the kernel refuses) is one line per reason
        and peer every ten seconds, not one per datagram."""
        self.longest_wait = 0.0
        """The longest a datagram waited in the socket's buffer before it was read, since
        `take_longest_wait`: a backlog there is load the loop's own lag does not show."""
        self.shortest_wait = math.inf
        """The shortest such wait since `take_shortest_wait`: high only while the queue in
        the buffer stands (it does not drain between bursts).  Both count only datagrams
        the kernel stamped: without stamps no wait is seen, and no queue is shed on."""
        self._held: list[Outgoing] = []
        """Datagrams sent while a burst is handled, to go out when `HELD` flushes."""
        self._coalesce = limits.udp_coalesce
        """Seconds the socket rests after a burst that emptied it (0: never)."""
        self._resume: asyncio.TimerHandle | None = None
        """While the socket rests after a burst (`TransportLimits.udp_coalesce`)."""
        host, port = sock.getsockname()[:2]
        self.listener = Listener("udp", host, port)
        self._loop.add_reader(sock.fileno(), self._readable)

    @property
    def socket(self) -> socket.socket:
        return self._sock

    def _readable(self) -> None:
        """Handle up to `BURST` waiting datagrams; each stamp is turned to the loop's clock
        by the offset between it and the wall clock, measured once per wake-up
        (`shared.clock.wall_offset`: a plain pair of reads is off by as long as the process
        was preempted between them)."""
        loop = self._loop
        now = loop.time()
        offset = -wall_offset(loop.time)
        try:
            burst = read_datagrams(self._sock, BURST)
        except OSError as error:  # an ICMP error of an earlier send; timers handle the loss
            self._log(logging.INFO, "receive", "udp %s:%d: %s", error)
            return
        held = HELD
        with held:  # (a loop callback: no burst is read while another is handled)
            for index, (data, host, port, stamp) in enumerate(burst):
                if self._closed:
                    return  # closed by a handler: the rest is dropped, as the socket would
                received_at = now
                if stamp:
                    received_at = stamp + offset
                    if not now - MAX_QUEUED_AGE <= received_at <= now:
                        now = loop.time()  # it may have come during this wake-up
                        received_at = clamped(received_at, now)
                    wait = now - received_at
                    self.longest_wait = max(self.longest_wait, wait)
                    self.shortest_wait = min(self.shortest_wait, wait)
                self._received(data, host, port, received_at)
                if index % FLUSH_EVERY == FLUSH_EVERY - 1:
                    held.flush()
        if self._coalesce > 0 and len(burst) < BURST and not self._closed:
            self._rest()

    def _rest(self) -> None:
        """Read nothing for `udp_coalesce` seconds after a burst that emptied the socket, so
        what comes meanwhile is read as one burst: fewer wake-ups (a full burst leaves more
        waiting, read at the loop's next turn as ever; one cut short by a receive error may
        leave some too, which then wait out the rest)."""
        self._loop.remove_reader(self._sock.fileno())
        self._resume = self._loop.call_later(self._coalesce, self._read_again)

    def _read_again(self) -> None:
        """The rest is over: read again, unless the endpoint or its socket closed meanwhile."""
        self._resume = None
        if not self._closed and self._sock.fileno() >= 0:
            self._loop.add_reader(self._sock.fileno(), self._readable)

    def take_longest_wait(self) -> float:
        """`longest_wait`, which starts again from 0."""
        wait, self.longest_wait = self.longest_wait, 0.0
        return wait

    def take_shortest_wait(self) -> float:
        """`shortest_wait` (0 if no datagram was read) less the socket's rest, which is a
        wait of our own and no queue; it starts again from none."""
        wait, self.shortest_wait = self.shortest_wait, math.inf
        return max(0.0, wait - self._coalesce) if wait != math.inf else 0.0

    def _received(self, data: bytes, host: str, port: int, received_at: float) -> None:
        if len(data) > self._limits.max_message_size:
            line = "udp %s:%d: dropped a %d-byte datagram from %s:%s"
            self._log(logging.WARNING, f"oversize {host}", line, len(data), host, port)
            return
        if data[:1] == b"\r" and not data.strip():
            return  # a CRLF keep-alive; UDP keep-alives need no answer
        source = Destination("udp", host, port)
        try:
            self._on_datagram(data, source, self.listener, received_at)
        except Exception:  # a handler bug must not stop the socket
            log.exception("udp %s:%d: message handler failed", source.host, source.port)

    def send(self, data: bytes, destination: Destination) -> None:
        """Send one datagram; the host must be an IP literal (DNS is the caller's, RFC 3263).

        Raises `OversizeDatagramError` (counted) for more than a datagram holds: the
        kernel's EMSGSIZE would only be logged, without the peer.  Other errors of the
        kernel are logged, not raised, as the asyncio transports did (the transaction
        timers handle the loss).  A send buffer full (4 MiB by default) drops the datagram
        like a lost one, where the transports held it in the process: a backlog there
        only adds delay and memory to a link that is already saturated.
        """
        if self._closed:
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
        address = (host, destination.port)
        held = HELD
        if held.holding:
            if not self._held:
                held.waiting.append(self)
            self._held.append((data, address))
            return
        self._send_now(data, address)

    def flush(self) -> None:
        """Send the datagrams held for the end of a burst (`HeldSends`), in their order;
        those of an endpoint closed meanwhile are dropped, as its socket's buffer is.

        They leave in bulk (`send_datagrams`: by `sendmmsg` in the compiled build); the one
        it stops at is sent alone by `sendto`, whose error says why.  Never raises: an
        address the socket refuses (a port out of range, a host that is no IP literal),
        which an immediate send raises to its caller, is found only here, after the caller
        went on; it costs its own datagram, with a line in the log."""
        held, self._held = self._held, []
        if self._closed:
            return
        sent = 0
        while (sent := send_datagrams(self._sock, held, sent)) < len(held):
            data, address = held[sent]  # what bulk sending stopped at, sent alone for why
            sent += 1
            try:
                self._send_now(data, address)
            except Exception as error:  # the log line says which and why
                line = "udp %s:%d: a held datagram to %s not sent: %s"
                self._log(logging.WARNING, f"held {address[0]}", line, address, error)

    def _send_now(self, data: bytes, address: tuple[str, int]) -> None:
        try:
            self._sock.sendto(data, address)
        except OSError as error:
            host = address[0]
            self._log(logging.INFO, f"send {host}", "udp %s:%d to %s: %s", host, error)

    def _log(self, level: int, reason: str, line: str, *values: object) -> None:
        """Log `line` (its first two values this socket's address) unless a line of `reason`
        went out within the last ten seconds; the next one says how many were not logged."""
        unlogged = self._throttle.due(reason, self._loop.time())
        if unlogged is None:
            return
        log.log(
            level, line + unlogged_note(unlogged), self.listener.host, self.listener.port, *values
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()


class WriteAhead(Protocol):
    """What must be on disk before a held datagram leaves (the edge's outbox journal)."""

    def flush(self) -> None:
        """Write what waits (should it raise, that is logged and the datagrams leave)."""


class HeldSends:
    """What the handling of a burst sends, held to go out together after it.

    Why: sent as each message is handled, ~100 µs apart on a loaded edge, a datagram often
    found its receiver (a gateway, a phone, SIPp) asleep and woke it, an interrupt to
    another CPU each time; sent together, the first wakes it and the rest find it awake
    (the edge's kernel time per call fell 10-30 %, docs/benchmarks.md).  Held only while a
    UDP burst is handled, flushed every `FLUSH_EVERY` datagrams of it and at its end; sends
    at any other time (timers, hand-ons, streams) leave at once.  One per process (`HELD`):
    a burst read on one socket answers through others (a worker's outbound socket).

    What a datagram's leaving must follow waits as well, and is written first at each flush
    (`write_ahead`: the outbox journal's lines, one write for the burst's events where there
    was one per event): a process killed before the flush has sent none of what they cover.
    What leaves otherwise during a burst (a stream's write, a send to a host name) is sent
    by a task, which Python 3.11 never runs eagerly: after the burst's last flush.
    """

    def __init__(self) -> None:
        self.holding = False
        self.waiting: list[UdpEndpoint] = []
        """The endpoints holding datagrams, in the order they first held one."""
        self.write_ahead: list[WriteAhead] = []
        """What to write before the held datagrams leave, in the order it first waited."""

    def __enter__(self) -> None:
        """A burst's handling begins: what it sends is held."""
        self.holding = True

    def __exit__(self, *_: object) -> None:
        """It ends (returned or raised): what it held leaves."""
        self.holding = False
        self.flush()

    def flush(self) -> None:
        writers, self.write_ahead = self.write_ahead, []
        for writer in writers:
            try:
                writer.flush()
            except Exception as error:  # what it could not write it counts lost; sends go on
                log.error("udp: writing ahead of held datagrams failed: %s", error)
        waiting, self.waiting = self.waiting, []
        for endpoint in waiting:
            endpoint.flush()


HELD: Final = HeldSends()


def clamped(received_at: float, now: float) -> float:
    """A stamp on the loop's clock, kept within `MAX_QUEUED_AGE` before `now` and not after
    it: outside, the wall clock was stepped between the kernel's stamp and our reading."""
    return min(max(received_at, now - MAX_QUEUED_AGE), now)


async def open_udp(
    host: str,
    port: int,
    on_datagram: DatagramHandler,
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
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError as error:  # no stamps: messages are timed when the loop reads them
            log.info("udp: no kernel receive timestamps: %s", error)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as error:
        sock.close()
        raise bind_error(error, "udp", host, port) from None
    return UdpEndpoint(sock, on_datagram, limits)
