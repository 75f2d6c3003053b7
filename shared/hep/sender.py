"""HEP packets to one or more collectors, never blocking or slowing the SIP it mirrors.

`offer` only appends to a bounded queue (full: the packet is dropped and
counted) and asks the loop for one flush `FLUSH_INTERVAL` later; the flush
writes every queued packet to every destination without waiting: UDP by a
non-blocking write on a connected socket (one packet a datagram), TCP by one
write of the whole flush to an asyncio transport whose buffer is bounded too.
Why a delay, not the loop's next turn: at 1000 calls a second a worker's loop
turns for one or two messages, so a flush a turn is a timer, a list and (TCP)
a write syscall per message or two; a flush every few milliseconds carries
dozens (each packet keeps the time it was captured, so Homer's ladder is not
shifted).  While every destination is known to be down until a retry (a UDP
collector's ICMP unreachable, a TCP one between reconnections) or stalled (a TCP
collector that stopped reading, its unread bytes past `TCP_BUFFER_LIMIT`, until
its transport's buffer drains), `taking` says so, and packets are counted
dropped as they come, never encoded or queued: a collector down or stalled
costs a call less than one up.  A collector that is down,
slow or gone costs drops, counted per reason in `callmesh_hep_dropped_total`,
and one log line when a destination starts dropping (again after
`EPISODE_GAP` without a drop); TCP reconnects in the background at most once
per `RECONNECT_INTERVAL`.  Packets are sent whole (a
stream of HEP packets needs no other framing: each carries its length).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Final

from shared.hep.destination import HepDestination
from shared.hep.metrics import DROPPED, SENT

log = logging.getLogger("callmesh.hep")

RECONNECT_INTERVAL: Final = 2.0
FLUSH_INTERVAL: Final = 0.005
"""Seconds a packet may wait in the queue for the next flush."""
EPISODE_GAP: Final = 10.0
"""Seconds without a drop after which the next drop starts a new episode (a new log line):
over UDP a success says nothing (a closed port answers every other packet with ICMP)."""
TCP_BUFFER_LIMIT: Final = 4 * 1024 * 1024
"""Bytes a TCP collector may have unread in our buffer before packets to it are dropped."""
STALL_RECHECK: Final = 60.0
"""Seconds a stalled collector is skipped at most before a flush looks again (its drain or its
loss ends the skip at once)."""


class _Target:
    """One destination: `write` sends a flush's packets, returning the drops by reason."""

    def __init__(self, destination: HepDestination) -> None:
        self.destination = destination
        self.last_drop = -EPISODE_GAP

    def write(self, packets: list[bytes], now: float) -> dict[str, int] | None:
        raise NotImplementedError

    def down_until(self, now: float) -> float:
        """The loop time until which every packet to it would be dropped as down (<= now: none)."""
        return now

    def skip_reason(self) -> str:
        """What a packet refused while it cannot take any is counted as."""
        return "down"

    def connected(self) -> bool:
        return True

    def close(self) -> None:
        raise NotImplementedError


class _UdpTarget(_Target):
    def __init__(self, destination: HepDestination) -> None:
        super().__init__(destination)
        family = socket.AF_INET6 if ":" in destination.host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._connected = False
        self._down_until = -RECONNECT_INTERVAL

    def write(self, packets: list[bytes], now: float) -> dict[str, int] | None:
        """One datagram each (a collector reads one packet per datagram); `os.write` on a
        connected socket, as it is cheaper than `send` (no format-string argument parsing),
        itself cheaper than `sendto`.  A collector found down (ICMP
        unreachable, or a name that does not resolve) is not sent to for
        `RECONNECT_INTERVAL`: its packets are dropped unsent, not each refused by the
        kernel."""
        if now < self._down_until:
            return {"down": len(packets)}
        slow = 0
        write = os.write
        descriptor = self._socket.fileno()
        for index, packet in enumerate(packets):
            try:
                if not self._connected:  # resolved once; a name that fails is retried later
                    self._socket.connect((self.destination.host, self.destination.port))
                    self._connected = True
                write(descriptor, packet)
            except BlockingIOError:
                slow += 1
            except OSError:  # ECONNREFUSED: an ICMP unreachable from an earlier packet
                self._down_until = now + RECONNECT_INTERVAL
                down = {"down": len(packets) - index}
                return {"slow": slow, **down} if slow else down
        return {"slow": slow} if slow else None

    def down_until(self, now: float) -> float:
        return self._down_until

    def close(self) -> None:
        self._socket.close()


class _TcpProtocol(asyncio.Protocol):
    """The transport's flow control tells the target when the collector stalls and drains."""

    def __init__(self, target: _TcpTarget) -> None:
        self._target = target

    def pause_writing(self) -> None:
        self._target.stalled = True

    def resume_writing(self) -> None:
        self._target.stalled = False
        self._target.on_change()

    def connection_lost(self, exc: Exception | None) -> None:
        self._target.transport = None
        self._target.stalled = False
        self._target.on_change()  # taken again: the next flush finds it down, and reconnects


class _TcpTarget(_Target):
    def __init__(
        self, destination: HepDestination, loop: asyncio.AbstractEventLoop, buffer_limit: int
    ) -> None:
        super().__init__(destination)
        self._loop = loop
        self._buffer_limit = buffer_limit
        self.transport: asyncio.Transport | None = None
        self.stalled = False
        """The collector stopped reading: our buffer passed `buffer_limit` and has not drained."""
        self._connecting: asyncio.Task[None] | None = None
        self._last_attempt = -RECONNECT_INTERVAL
        self.on_change: Callable[[], None] = _nothing
        """Called when a connection is up or lost, or a stall ends (the sender takes packets
        again if it was dropping everything)."""

    def write(self, packets: list[bytes], now: float) -> dict[str, int] | None:
        """A flush's packets in one write (a HEP stream needs no framing but theirs)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            self.reconnect()
            return {"down": len(packets)}
        if self.stalled:
            return {"slow": len(packets)}
        size = transport.get_write_buffer_size()
        fit = 0
        for packet in packets:  # as the buffer would be before each: past the bound, dropped
            if size > self._buffer_limit:
                break
            size += len(packet)
            fit += 1
        if fit:
            transport.write(b"".join(packets[:fit]))
        return {"slow": len(packets) - fit} if fit < len(packets) else None

    def connected(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def down_until(self, now: float) -> float:
        """Down until its next connection attempt, unless one comes up before; stalled, until
        its buffer drains or the connection is lost (both call `on_change`)."""
        if self.stalled:
            return now + STALL_RECHECK
        return now if self.connected() else self._last_attempt + RECONNECT_INTERVAL

    def skip_reason(self) -> str:
        """What a packet refused while it cannot take any is counted as."""
        return "slow" if self.stalled else "down"

    def reconnect(self) -> None:
        now = self._loop.time()
        if self._connecting is not None or now - self._last_attempt < RECONNECT_INTERVAL:
            return
        self._last_attempt = now
        self._connecting = self._loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(RECONNECT_INTERVAL):  # wait_for can lose close's cancel
                transport, _ = await self._loop.create_connection(
                    lambda: _TcpProtocol(self), self.destination.host, self.destination.port
                )
            transport.set_write_buffer_limits(high=self._buffer_limit)
            self.transport = transport
            self.on_change()
        except (OSError, TimeoutError):
            pass  # still down: counted as drops, logged once per episode by the sender
        finally:
            self._connecting = None

    def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        if self.transport is not None:
            self.transport.close()


class HepSender:
    """A bounded queue of encoded packets, flushed to every destination on the loop."""

    def __init__(
        self,
        destinations: list[HepDestination],
        *,
        queue_size: int = 10000,
        tcp_buffer_limit: int = TCP_BUFFER_LIMIT,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._targets: list[_Target] = [
            _UdpTarget(d) if d.transport == "udp" else _TcpTarget(d, self._loop, tcp_buffer_limit)
            for d in destinations
        ]
        self._queue: list[bytes] = []
        """A list, not a deque: compiled, its append and length are native, and a flush takes
        it whole, leaving a new one."""
        self._queue_size = queue_size
        self._flushing: asyncio.TimerHandle | None = None
        self._last_overflow = -EPISODE_GAP
        self._skipping: dict[str, int] = {}
        """While every destination is down or stalled: the drops a packet counts, by reason (one
        a destination)."""
        self._retrying: asyncio.TimerHandle | None = None
        for target in self._targets:
            if isinstance(target, _TcpTarget):
                target.on_change = self._retry
                target.reconnect()  # now, not at the first message

    def taking(self) -> bool:
        """False while every destination is down until a retry, or stalled: the packet about
        to be made is counted dropped (`down`, `slow`), and need not be encoded nor offered."""
        if self._skipping:
            for reason, count in self._skipping.items():
                DROPPED[reason] += count
            return False
        return True

    def offer(self, packet: bytes) -> None:
        """Queue one packet; when the queue is full it is dropped (counted), never waited on."""
        if len(self._queue) >= self._queue_size:
            DROPPED["queue_full"] += 1
            now = self._loop.time()
            if now - self._last_overflow >= EPISODE_GAP:
                log.warning("HEP: queue of %d packets full; dropping", self._queue_size)
            self._last_overflow = now
            return
        self._queue.append(packet)
        if self._flushing is None:
            self._flushing = self._loop.call_later(FLUSH_INTERVAL, self.flush)

    def connected(self) -> bool:
        """Whether every TCP destination has its connection up (UDP ones always have)."""
        return all(target.connected() for target in self._targets)

    def flush(self) -> None:
        """Send what is queued now (the timer's job; `stop` and benchmarks call it too)."""
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        if not self._queue:
            return
        packets = self._queue
        self._queue = []
        now = self._loop.time()
        for target in self._targets:
            dropped = target.write(packets, now)
            if dropped is None:
                SENT.value += len(packets)
                continue
            SENT.value += len(packets) - sum(dropped.values())
            for reason, count in dropped.items():
                DROPPED[reason] += count
            if now - target.last_drop >= EPISODE_GAP:
                log.warning(
                    "HEP to %s: collector %s; dropping", target.destination, ", ".join(dropped)
                )
            target.last_drop = now
        retry = now
        for index, target in enumerate(self._targets):
            until = target.down_until(now)
            retry = until if index == 0 else min(retry, until)
        if retry > now:  # every destination down: drop as they come until the earliest retry
            self._retry()
            for target in self._targets:
                reason = target.skip_reason()
                self._skipping[reason] = self._skipping.get(reason, 0) + 1
            self._retrying = self._loop.call_later(retry - now, self._retry)

    def _retry(self) -> None:
        """Take packets again: a destination's retry is due, its connection came up or was
        lost, or its stall ended."""
        self._skipping = {}
        if self._retrying is not None:
            self._retrying.cancel()
            self._retrying = None

    async def stop(self) -> None:
        self.flush()
        self._retry()
        for target in self._targets:
            target.close()


def _nothing() -> None:
    pass
