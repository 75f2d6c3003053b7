"""What HEP capture costs per call: the capture's CPU beside the proxy core's, at 1000 cps.

Run ``python -m bench.capture [--calls N]`` (or ``python -m bench capture``).
The proxy core bench's call (`bench.proxy.core_calls`: INVITE, 100/180/200,
ACK, BYE, 200, the clock stepped 1 ms per call, i.e. 1000 cps) is played once
to record every message the edge would receive and send, with its addresses.
Then those messages go through `Capture` as `EdgeSockets` hands them over, in
an event loop so the sender's flushes run (the loop's own turns, measured
without capture, are subtracted), in four set-ups: the trace ring
only; HEP to a UDP collector that reads nothing (the kernel takes the packets);
HEP to a port nobody listens on (a down collector: ICMP, drops); HEP over TCP
to a collector that never connects (dropped, never waited on).  Printed: the
capture's CPU per call in each, the proxy core's per call, and the capture's
share of the core's (an upper bound of its share of a worker's CPU, which also
spends the event loop's and the kernel's time per message).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time

from bench.proxy.core_calls import LISTENER, CallDriver, run
from services.edge.proxy.actions import Action, Send
from services.edge.runtime.capture import Capture
from services.edge.runtime.trace_ring import TraceRing
from shared.hep.destination import HepDestination
from shared.hep.mirror import HepMirror
from shared.hep.sender import HepSender
from shared.sip.transport.destination import Destination

Message = tuple[bool, bytes, tuple[str, int], tuple[str, int]]
"""(received?, bytes, source, destination) as the sockets see them."""


class _Recorder(CallDriver):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []

    def _receive(self, data: bytes, source: Destination) -> list[Action]:
        local = (LISTENER.host, LISTENER.port)
        self.messages.append((True, data, (source.host, source.port), local))
        actions = super()._receive(data, source)
        for action in actions:
            if isinstance(action, Send):
                to = (action.destination.host, action.destination.port)
                self.messages.append((False, action.data, local, to))
        return actions


def record(calls: int) -> list[list[Message]]:
    recorder = _Recorder()
    per_call = []
    for n in range(calls):
        recorder.messages = []
        recorder.call(n)
        per_call.append(recorder.messages)
    return per_call


async def capture_seconds(calls: list[list[Message]], setup: str) -> float:
    """CPU seconds per call of the capture (and its sender's flushes) in ``setup``."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    port = sink.getsockname()[1]
    if setup == "hep-down":
        sink.close()  # nobody listens there now
    destinations = {
        "none": [],
        "ring": [],
        "hep-udp": [HepDestination("udp", "127.0.0.1", port)],
        "hep-down": [HepDestination("udp", "127.0.0.1", port)],
        "hep-tcp-down": [HepDestination("tcp", "127.0.0.1", port)],
    }[setup]
    sender = HepSender(destinations) if destinations else None
    hep = HepMirror(sender, capture_id=1, skip_methods=frozenset({"OPTIONS"})) if sender else None
    capture = Capture(hep, TraceRing(10000))
    started = time.process_time()
    for messages in calls:
        if setup != "none":
            for received, data, source, destination in messages:
                if received:
                    capture.received(data, "udp", source, destination)
                else:
                    capture.sent(data, "udp", source, destination)
        await asyncio.sleep(0)  # the loop turns between calls' messages: flushes run
    if sender is not None:
        await sender.stop()
    spent = time.process_time() - started
    sink.close()
    return spent / len(calls)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capture")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    calls = record(args.calls)
    per_call = sum(len(m) for m in calls) / len(calls)
    core = sorted(run(args.calls) for _ in range(args.repeat))[args.repeat // 2]
    print(f"proxy core: {core * 1e6:.1f} µs CPU per call ({per_call:.0f} messages per call)")
    loop = sorted(asyncio.run(capture_seconds(calls, "none")) for _ in range(args.repeat))
    baseline = loop[args.repeat // 2]
    for setup in ("ring", "hep-udp", "hep-down", "hep-tcp-down"):
        runs = sorted(asyncio.run(capture_seconds(calls, setup)) for _ in range(args.repeat))
        median = runs[args.repeat // 2] - baseline
        print(
            f"capture {setup}: {median * 1e6:.1f} µs CPU per call, "
            f"{median / core * 100:.1f} % of the proxy core's (median of {args.repeat})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
