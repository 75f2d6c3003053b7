"""What receiving a SIP datagram costs the process, in CPU: the UDP endpoint's own reader
(`recvmsg`, the kernel's receive stamp, up to `BURST` datagrams per wake-up) against the
asyncio datagram protocol it replaced, on uvloop, in the same run.

Run ``python -m bench.udp_receive [--datagrams N] [--burst N] [--repeat N]`` (or
``python -m bench udp_receive``). A sender process sends ``--datagrams`` 500-byte
INVITEs to the receiver in bursts of ``--burst`` (a pause of 1 ms after each, so the
kernel drops none); the receiver, this process, hands each to a handler that only
counts. CPU (user + system, `time.process_time`) of this process from the first datagram
to the last, per datagram: the loopback's delivery runs in the sender, so this is the
receiving side's own part.  Medians of ``--repeat`` runs, the two paths alternating.
The callgrind counts of `bench.proxy.core_calls` do not see transports, hence this.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import uvloop

from shared.sip.transport.base import Listener
from shared.sip.transport.destination import Destination
from shared.sip.transport.udp import open_udp

INVITE = (
    b"INVITE sip:14075550001@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKbench1;rport\r\n"
    b"From: <sip:caller@127.0.0.1>;tag=bench\r\n"
    b"To: <sip:14075550001@127.0.0.1>\r\n"
    b"Call-ID: udp-receive-bench\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:caller@127.0.0.1:5099>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 170\r\n\r\n" + b"v=0\r\n" + b"a=x:" + b"p" * 159 + b"\r\n"
)
LISTENER = Listener("udp", "127.0.0.1", 0)
DEADLINE = 30.0
"""Seconds a run may take at most (datagrams lost on a busy machine: it ends short)."""


class ProtocolReceiver(asyncio.DatagramProtocol):
    """The path before: the loop's transport reads, a callback per datagram, timed on
    arrival in the loop (the same checks as the endpoint's, the same handler call)."""

    def __init__(self, handler: Callable[[bytes, Destination, Listener, float], None]) -> None:
        self._handler = handler
        self._loop = asyncio.get_running_loop()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) > 65535 or (data[:1] == b"\r" and not data.strip()):
            return
        source = Destination("udp", str(addr[0]), int(addr[1]))
        self._handler(data, source, LISTENER, self._loop.time())


def send(port: int, datagrams: int, burst: int) -> None:
    """The sender process: bursts, each followed by 1 ms of quiet."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        target = ("127.0.0.1", port)
        for start in range(0, datagrams, burst):
            for _ in range(min(burst, datagrams - start)):
                sock.sendto(INVITE, target)
            time.sleep(0.001)


async def run(endpoint_path: bool, datagrams: int, burst: int) -> tuple[float, int]:
    """(CPU seconds of this process from the first datagram to the last, datagrams seen)."""
    loop = asyncio.get_running_loop()
    seen = 0
    started = 0.0
    done = loop.create_future()

    def count(_data: bytes, _source: Destination, _listener: Listener, _at: float) -> None:
        nonlocal seen, started
        if not seen:
            started = time.process_time()
        seen += 1
        if seen == datagrams and not done.done():
            done.set_result(time.process_time())

    if endpoint_path:
        endpoint = await open_udp("127.0.0.1", 0, count)
        port, close = endpoint.listener.port, endpoint.close
    else:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: ProtocolReceiver(count), local_addr=("127.0.0.1", 0)
        )
        port, close = transport.get_extra_info("sockname")[1], transport.close
    argv = [sys.executable, "-m", "bench.udp_receive", "--send", str(port)]
    argv += ["--datagrams", str(datagrams), "--burst", str(burst)]
    sender = subprocess.Popen(argv)  # noqa: ASYNC220 - started, not awaited: the loop reads meanwhile
    try:
        ended = await asyncio.wait_for(asyncio.shield(done), DEADLINE)
    except TimeoutError:
        ended = time.process_time()
    finally:
        sender.wait(DEADLINE)
        close()
    return ended - started, seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datagrams", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--send", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.send:
        send(args.send, args.datagrams, args.burst)
        return
    per: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeat):
        for endpoint_path in (False, True):
            cpu, seen = uvloop.run(run(endpoint_path, args.datagrams, args.burst))
            if seen:
                per[endpoint_path].append(cpu / seen * 1e6)
    before, after = (statistics.median(per[path]) for path in (False, True))
    print(
        f"UDP receive, {args.datagrams} datagrams of {len(INVITE)} bytes in bursts of "
        f"{args.burst}, medians of {args.repeat} runs (CPU per datagram, this process):"
    )
    print(f"  asyncio datagram protocol (before): {before:6.2f} µs")
    print(f"  endpoint's reader, kernel stamp:    {after:6.2f} µs  ({after / before:.2f} times)")


if __name__ == "__main__":
    main()
