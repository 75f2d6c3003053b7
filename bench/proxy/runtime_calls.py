"""The proxy core with the runtime around it: the call of `core_calls` over loopback UDP.

Why: `core_calls` counts the core alone, and the wire benchmark (`bench.proxy.run`)
is real but too noisy on a shared two-core machine to show a few percent, and under
callgrind an idle edge's own work swamps it. This one runs what a worker runs per
datagram — the UDP socket's reads and sends, `EdgeSockets`, the `ProxyDriver`, its loop
timer and event publisher (an in-memory bus, batching as an edge does) — on one event
loop, with the caller and the gateway as plain sockets of the same process, one message
at a time. So a run is deterministic enough for `valgrind --tool=callgrind` (count two
sizes and divide the difference). The CPU time it prints is the process's, user and
system, so the benchmark's own peers are in it: compare trees with it, or count with
callgrind.

    .venv/bin/python -m bench.proxy.runtime_calls --calls 5000
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from collections import deque
from collections.abc import Sequence

import uvloop

from bench.proxy.core_calls import EDGE, Table, caller_request, gateway_answer
from services.edge.proxy.call_events import CallEvents
from services.edge.proxy.core import Proxy, ProxyTimers
from services.edge.proxy.interfaces import Interface, Interfaces
from services.edge.proxy.routes import NumberRouter
from services.edge.runtime.driver import ProxyDriver
from services.edge.runtime.sockets import EdgeSockets
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.settings import ListenAddress, Settings
from shared.sip.message import Request, parse_message

BATCH_LINGER = 1.0
"""Call events go in batches of the edge's default size, each sent once full: as a worker's
are from some 900 calls a second (7 events a call, 40 ms of linger).  Batches bounded by
time would hold fewer events under callgrind, where a call takes 50 times as long, and one
message per event would count the bus several times over what a worker pays for it."""

EDGE_PORT = 15062
"""The port the edge's Interface advertises (its socket is bound to any free port)."""


class Peer:
    """A caller or a gateway: a socket on a free port, read by the loop as the edge's is.

    Registered with the loop once: awaiting `sock_recv` per datagram would add and remove
    a reader each time, system calls of the benchmark's own that the edge does not make.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((EDGE, 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]
        self._loop = loop
        self._inbox: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        try:
            while True:
                self._inbox.append(self.sock.recv(65535))
        except BlockingIOError:
            pass
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def receive(self) -> bytes:
        """The next datagram (the edge's answer or its forward)."""
        while not self._inbox:
            self._waiter = self._loop.create_future()
            await self._waiter
        return self._inbox.popleft()

    def close(self) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()


class RuntimeCalls:
    """One edge worker's runtime around a `Proxy`, and the caller and gateways around it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.caller, self.gateway, self.other_gateway = Peer(loop), Peer(loop), Peer(loop)
        interfaces = Interfaces([Interface("udp", EDGE, EDGE_PORT, EDGE_PORT)])
        timers = ProxyTimers(fr=2.0, fr_inv=10.0)
        table = Table((self.gateway.port, self.other_gateway.port))
        self.proxy = Proxy(interfaces, NumberRouter(table), timers, call_events=CallEvents("bench"))
        self.broker = MemoryBroker()
        self.bus = MemoryBus(self.broker, "bench", "edge", "edge-bench")
        self.driver = ProxyDriver(
            self.proxy,
            self.bus,
            instance="edge-bench",
            event_batch=Settings.model_fields["edge_event_batch"].default,
            event_linger=BATCH_LINGER,
        )
        self.sockets = EdgeSockets(self.driver.on_message)
        self.edge: tuple[str, int] = (EDGE, 0)

    async def start(self) -> None:
        await self.bus.start()
        await self.sockets.open([ListenAddress("udp", EDGE, 0)], shared=False)
        self.edge = (EDGE, self.sockets.bound[0].listener.port)
        self.driver.start(self.sockets)

    async def stop(self) -> None:
        await self.driver.stop()
        await self.sockets.close()
        await self.bus.close()
        for peer in (self.caller, self.gateway, self.other_gateway):
            peer.close()

    async def call(self, n: int) -> None:
        """INVITE, 100/180/200 from the gateway, ACK and BYE along the Record-Route, its 200."""
        caller, gateway, edge = self.caller.sock, self.gateway.sock, self.edge
        me, gw = self.caller.port, self.gateway.port
        uri = f"sip:1407555{n % 10000:04d}@{EDGE}:{EDGE_PORT}"
        caller.sendto(caller_request("INVITE", n, uri, 1, port=me), edge)
        trying = await self.caller.receive()
        assert trying.startswith(b"SIP/2.0 100 "), trying[:40]
        invite = parse_message(await self.gateway.receive())
        assert isinstance(invite, Request)
        gateway.sendto(gateway_answer(invite, 100, "Trying", port=gw), edge)
        gateway.sendto(gateway_answer(invite, 180, "Ringing", port=gw), edge)
        ringing = await self.caller.receive()
        assert ringing.startswith(b"SIP/2.0 180 "), ringing[:40]
        gateway.sendto(gateway_answer(invite, 200, "OK", port=gw), edge)
        answer = parse_message(await self.caller.receive())
        routes = "".join(f"Route: {rr}\r\n" for rr in reversed(answer.headers("record-route")))
        gateway_uri, tag = f"sip:gw@{EDGE}:{gw}", ";tag=gw1"
        ack = caller_request("ACK", n, gateway_uri, 1, extra=routes, to_tag=tag, port=me)
        caller.sendto(ack, edge)
        assert (await self.gateway.receive()).startswith(b"ACK ")
        bye = caller_request("BYE", n, gateway_uri, 2, extra=routes, to_tag=tag, port=me)
        caller.sendto(bye, edge)
        forwarded = parse_message(await self.gateway.receive())
        assert isinstance(forwarded, Request)
        gateway.sendto(gateway_answer(forwarded, 200, "OK", port=gw), edge)
        assert (await self.caller.receive()).startswith(b"SIP/2.0 200 ")


async def run(calls: int, warm: int = 200) -> float:
    """CPU seconds per call of the process (user and system), after `warm` calls."""
    bench = RuntimeCalls(asyncio.get_running_loop())
    await bench.start()
    try:
        for n in range(warm):
            await bench.call(n)
        start = time.process_time()
        for n in range(warm, warm + calls):
            await bench.call(n)
        return (time.process_time() - start) / calls
    finally:
        await bench.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy.runtime_calls")
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results = sorted(uvloop.run(run(args.calls)) for _ in range(args.repeat))  # as the edge
    median = results[len(results) // 2]
    print(
        f"proxy core and runtime: {median * 1e6:.1f} µs of CPU per call (median of {args.repeat})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
