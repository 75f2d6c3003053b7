"""HEP capture's cost per call in instructions, capture on vs off: a count, not a time.

Run ``python -m bench capture_instructions [-- --calls 200]`` (needs valgrind).  CPU time
on this shared 2-core machine moves more between runs than capture costs (`capture_wire`);
an instruction count does not.  Each set-up runs the proxy core bench's call
(`bench.proxy.core_calls`: INVITE, 100/180/200, ACK, BYE, 200) through the in-process
pipeline a worker runs per message, all set-ups in turn in one child process under
``valgrind --tool=callgrind``; callgrind dumps its counts at each `mark` (a sleep), so the
stretch between a set-up's two marks is its ``--calls`` calls alone, after its warm-up, with
no start-up in it.  The pipeline: the proxy core, each message it sends leaving by a real
UDP socket (to a sink that this process reads), the loop turning once per call, and with
capture each message shown to `Capture` as `EdgeSockets` shows it, the HEP sender flushed
every `CALLS_PER_FLUSH` calls (its timer's cadence at 500 calls a second, one of the wire
bench's two workers), and once before and after the counted calls, so the count sends the
packets of its own calls, not the warm-up's.  Set-ups:

- ``driver``: the bench's own message building and parsing, the proxy's answers replayed
  from a recording (no proxy): taken out of every other figure;
- ``none``: no capture at all; ``off``: the trace ring only (an edge with HEP off: the
  default, and the wire bench's ``off``);
- ``udp``: HEP to a UDP collector; ``tcp``: HEP over TCP to a collector reading it;
  ``down``: HEP to a UDP port nobody listens on.

Printed: instructions per call net of the driver's, and each over ``off``'s (the issue's
target: ``udp`` ≤ 1.10).  Callgrind counts user space only: the kernel's side of the
extra sends (about a fifth of the edge's CPU on the wire, `capture_wire`'s ``kernel``) is
not in these figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.capture_wire import Collector
from bench.proxy.core_calls import LISTENER, CallDriver
from deploy.labs.ports import free_port
from services.edge.proxy.actions import Action, Send
from services.edge.runtime.capture import Capture
from services.edge.runtime.trace_ring import TraceRing
from shared.hep.destination import HepDestination
from shared.hep.mirror import HepMirror
from shared.hep.sender import FLUSH_INTERVAL, HepSender
from shared.sip.transport.destination import Destination

SETUPS = ("driver", "none", "off", "udp", "tcp", "down")
WARM_CALLS = 100
CALLS_PER_FLUSH = max(1, round(FLUSH_INTERVAL * 500))
LOCAL = (LISTENER.host, LISTENER.port)
_TOTALS = re.compile(rb"\ntotals: (\d+)")
MARK = "*nanosleep*"
"""What `mark` calls (`time.sleep`'s system call): callgrind dumps before each."""


class Pipeline(CallDriver):
    """The proxy core with what a worker does around it per message: sends and capture."""

    def __init__(self, capture: Capture | None, sink: tuple[str, int]) -> None:
        super().__init__()
        self.capture = capture
        self.sink = sink
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.out.setblocking(False)
        self.recording: list[list[Action]] | None = None
        """Set to replay: the proxy's answers, taken in turn instead of asking it."""
        self._replayed = 0

    def _receive(self, data: bytes, source: Destination) -> list[Action]:
        capture = self.capture
        if capture is not None:
            capture.received(data, "udp", (source.host, source.port), LOCAL)
        if self.recording is not None:
            actions = self.recording[self._replayed % len(self.recording)]
            self._replayed += 1
            return actions
        actions = super()._receive(data, source)
        for action in actions:
            if isinstance(action, Send):
                self.out.sendto(action.data, self.sink)
                if capture is not None:
                    to = (action.destination.host, action.destination.port)
                    capture.sent(action.data, "udp", LOCAL, to)
        return actions


class _Recorder(Pipeline):
    def __init__(self, sink: tuple[str, int]) -> None:
        super().__init__(None, sink)
        self.answers: list[list[Action]] = []

    def _receive(self, data: bytes, source: Destination) -> list[Action]:
        actions = super()._receive(data, source)
        self.answers.append(actions)
        return actions


def _sender(setup: str, ports: dict[str, int]) -> HepSender | None:
    transport = "tcp" if setup == "tcp" else "udp"
    port = ports.get(setup)
    return HepSender([HepDestination(transport, "127.0.0.1", port)]) if port else None


def mark() -> None:
    """Where callgrind dumps its counts and starts afresh (``--dump-before`` the sleep's
    system call): the one sleep of the child, so each dump is one stretch of it."""
    time.sleep(0.001)


async def measure(setup: str, calls: int, ports: dict[str, int]) -> None:
    """``calls`` calls of ``setup`` between two marks, after its warm-up."""
    sink = ("127.0.0.1", ports["sink"])
    sender = _sender(setup, ports)
    hep = HepMirror(sender, capture_id=1) if sender is not None else None
    ring = TraceRing(10000) if setup not in ("none", "driver") else None
    pipeline = Pipeline(Capture(hep, ring) if hep or ring else None, sink)
    for _ in range(500):  # a TCP collector's connection: up before the first packet
        if sender is None or sender.connected():
            break
        await asyncio.sleep(0.01)
    if setup == "driver":
        recorder = _Recorder(sink)
        for n in range(WARM_CALLS):
            recorder.call(n)
        pipeline.recording = recorder.answers
    for n in range(WARM_CALLS):
        pipeline.call(n)
    if sender is not None:
        sender.flush()  # the warm-up's packets: sent before the count, not in it
    mark()
    for n in range(WARM_CALLS, WARM_CALLS + calls):
        pipeline.call(n)
        if sender is not None and n % CALLS_PER_FLUSH == 0:
            sender.flush()
        await asyncio.sleep(0)
    if sender is not None:
        sender.flush()  # the last calls' packets: sent within the count
    mark()
    if sender is not None:
        await sender.stop()


async def child(setups: Sequence[str], calls: int, ports: dict[str, int]) -> None:
    """Every set-up in turn, in one process (start-up paid once); what valgrind counts."""
    for setup in setups:
        await measure(setup, calls, ports)


class Sinks:
    """The UDP sink for SIP, the UDP and TCP collectors (the wire bench's, reading on threads
    of this process, outside valgrind), and a UDP port nobody listens on."""

    def __init__(self) -> None:
        self.sip, self.hep = Collector(), Collector()
        self.ports = {
            "sink": self.sip.port,
            "udp": self.hep.port,
            "tcp": self.hep.tcp_port,
            "down": free_port(),
        }

    def close(self) -> None:
        self.sip.close()
        self.hep.close()


def per_call(setups: Sequence[str], calls: int, ports: dict[str, int]) -> dict[str, float]:
    """Each set-up's instructions per call: one child under callgrind, dumping its counts at
    each mark; the stretch between a set-up's two marks is its calls alone."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "out"
        argv = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--dump-before={MARK}",
            sys.executable, "-m", "bench.capture_instructions", "--calls", str(calls),
            "--child", *setups, *(f"{name}={port}" for name, port in ports.items()),
        ]  # fmt: skip # valgrind's arguments, then the child's
        done = subprocess.run(argv, capture_output=True, timeout=3600, check=False, env=_env())
        if done.returncode != 0:
            raise RuntimeError(f"valgrind failed: {done.stderr.decode()[-2000:]}")
        dumps = sorted(out.parent.glob("out.*"), key=lambda path: int(path.suffix[1:]))
        totals = [int(_TOTALS.findall(path.read_bytes())[-1]) for path in dumps]
    if len(totals) != 2 * len(setups):
        raise RuntimeError(f"{len(totals)} dumps for {len(setups)} set-ups: a stray sleep?")
    return {setup: totals[2 * n + 1] / calls for n, setup in enumerate(setups)}


def _env() -> dict[str, str]:
    """The same hashing in every run, so the counts repeat."""
    return {**os.environ, "PYTHONHASHSEED": "0"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capture_instructions")
    parser.add_argument("--calls", type=int, default=200, help="calls counted per set-up")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        setups = [item for item in args.child if "=" not in item]
        ports = dict(item.split("=") for item in args.child if "=" in item)
        asyncio.run(child(setups, args.calls, {k: int(v) for k, v in ports.items()}))
        return 0
    sinks = Sinks()
    try:
        counts = per_call(SETUPS, args.calls, sinks.ports)
    except RuntimeError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    finally:
        sinks.close()
    driver = counts.pop("driver")
    net = {setup: count - driver for setup, count in counts.items()}
    print(
        f"instructions per call (callgrind, user space), {args.calls} calls of each set-up "
        f"after {WARM_CALLS} to warm up, the bench driver's {driver:,.0f} taken out; "
        f"HEP flushed every {CALLS_PER_FLUSH} calls"
    )
    print(f"{'setup':<6}{'instructions/call':>19}{'÷ off':>8}{'÷ none':>8}")
    for setup, count in net.items():
        print(f"{setup:<6}{count:>19,.0f}{count / net['off']:>8.3f}{count / net['none']:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
