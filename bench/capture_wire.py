"""What HEP capture costs a real edge on the wire: CPU per call, HEP on vs off, SIPp at 1000 cps.

Run ``python -m bench capture_wire [-- --rate 1000 --duration 10 --repeat 3]`` from the
repository root.  The proxy benchmark's set-up (`bench.proxy`: two SIPp gateways, the seed
table in Redis, SIPp dialling through the edge along the route set), with one edge process
(``python -m services.edge``, two workers) per set-up, all started at once and measured in
turn, alternating, so each set-up sees the same machine:

- ``off``: no HEP (the trace ring on, as by default);
- ``udp``: HEP to a live UDP collector (a socket read by a thread of this process, which
  counts the packets: they are not the edge's CPU);
- ``tcp``: HEP to a live TCP collector (the same, over one connection per edge worker);
- ``slow``: HEP to a TCP collector that takes the connections and never reads them (its
  receive buffer made small): once the kernel's buffers and the sender's bounded one are
  full, packets are dropped as ``slow``;
- ``down``: HEP to a UDP port nobody listens on (ICMP unreachable, drops counted).

CPU is the edge's process tree's (``/proc``: user + system, its workers included) from the
first call of a run until a second after its last, less its idle CPU (read for 2 s before
each run) over that time, per call offered.  Printed: per set-up the
median over ``--repeat`` runs of CPU µs per call (kernel part apart), failed calls and SIPp's
mean INVITE-to-200 time; and its
CPU over ``off``'s as the median of the ratios of each repeat (a repeat runs every set-up once,
back to back, so a ratio compares runs a minute apart, not the machine's busy and quiet
quarters of an hour) with the lowest and highest of them (the issue's target: ``udp`` ≤ 1.10);
the HEP packets the collector got per call of ``udp`` (13 for the benchmark's call; more when
calls fail and retransmit).  The
edges shed no load (``CALLMESH_OVERLOAD_LAG_MS=0``): refused calls would cost less than the calls
they replace.  The machine is shared: compare the ratios of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
from pathlib import Path

from bench.proxy.callmesh import CallmeshEdge
from bench.proxy.errors import BenchError
from bench.proxy.routing import LOOPBACK
from bench.proxy.run import raise_open_files_limit, work_directory
from bench.proxy.setups import (
    Row,
    alternating_runs,
    one_rate,
    print_rows,
    row_of,
    running_edges,
)
from bench.proxy.sipp import running_gateways
from deploy.labs.ports import free_port

SETUPS = ("off", "udp", "tcp", "slow", "down")


class Collector:
    """A HEP collector on UDP and on TCP that reads and counts, on threads (its CPU is not
    the edge's), and a stalled one on TCP that reads nothing."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.socket.bind((LOOPBACK, 0))
        self.socket.settimeout(0.2)
        self.port: int = self.socket.getsockname()[1]
        self.packets = 0
        self.tcp_packets = 0
        self._running = True
        self.server = socket.create_server((LOOPBACK, 0))
        self.server.settimeout(0.2)
        self.tcp_port: int = self.server.getsockname()[1]
        self.stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # accepted ones too
        self.stalled.bind((LOOPBACK, 0))
        self.stalled.listen()
        self.stalled.settimeout(0.2)
        self.stalled_port: int = self.stalled.getsockname()[1]
        self._held: list[socket.socket] = []
        self._threads = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._hold, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _accept(self) -> None:
        while self._running:
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._read_stream, args=(connection,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _hold(self) -> None:
        """Take each connection and read nothing from it: a collector too slow for the edge."""
        while self._running:
            try:
                self._held.append(self.stalled.accept()[0])
            except TimeoutError:
                continue

    def _read_stream(self, connection: socket.socket) -> None:
        """Packets cut by their length field (bytes 4 and 5 of each)."""
        connection.settimeout(0.2)
        buffer = b""
        with connection:
            while self._running:
                try:
                    data = connection.recv(1 << 20)
                except TimeoutError:
                    continue
                if not data:
                    return
                buffer += data
                while len(buffer) >= 6 and len(buffer) >= (size := int.from_bytes(buffer[4:6])):
                    self.tcp_packets += 1
                    buffer = buffer[size:]

    def _read(self) -> None:
        while self._running:
            try:
                data = self.socket.recv(65535)
            except TimeoutError:
                continue
            if data.startswith(b"HEP3"):
                self.packets += 1

    def close(self) -> None:
        self._running = False
        for thread in self._threads:
            thread.join()
        self.socket.close()
        self.server.close()
        for connection in self._held:
            connection.close()
        self.stalled.close()


def edge_of(setup: str, collector: Collector) -> CallmeshEdge:
    destination = {
        "off": "",
        "udp": f"udp:{LOOPBACK}:{collector.port}",
        "tcp": f"tcp:{LOOPBACK}:{collector.tcp_port}",
        "slow": f"tcp:{LOOPBACK}:{collector.stalled_port}",
    }.get(setup, f"udp:{LOOPBACK}:{free_port()}")
    return CallmeshEdge(
        port=free_port(),
        http_port=free_port(),
        namespace=f"bench-capture-{setup}",  # each launch empties its namespace first
        env={
            "CALLMESH_HEP_DESTINATIONS": destination,
            "CALLMESH_HEP_CAPTURE_ID": "1",
            # CPU per call, not shedding, is measured: a loop made late by the shared machine
            # would refuse calls (503), which then cost less than the calls they replace.
            "CALLMESH_OVERLOAD_LAG_MS": "0",
        },
    )


def bench(
    setups: list[str], rate: int, duration: float, repeat: int, workdir: Path
) -> tuple[list[Row], float]:
    """Each set-up's medians, and the HEP packets the collector got per call of ``udp``."""
    wire = one_rate(rate, duration, workdir)
    collector = Collector()
    try:
        with (
            running_gateways(wire.table, workdir, wire.config.recv_timeout_ms),
            running_edges(
                {setup: edge_of(setup, collector) for setup in setups}, wire.table, workdir
            ) as edges,
        ):
            runs = alternating_runs(
                edges, wire.plan, repeat, config=wire.config, workdir=workdir,
                numbers=wire.numbers, tag=str(rate),
            )  # fmt: skip # one run's parts
    finally:
        collector.close()
    calls = sum(r.attempted for r, _ in runs.get("udp", []))
    off = [r.cpu_ms_per_call for r, _ in runs["off"]]
    rows = [row_of(setup, runs[setup], off) for setup in setups]
    return rows, collector.packets / max(calls, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capture_wire")
    parser.add_argument("--rate", type=int, default=1000, help="calls offered per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls per run")
    parser.add_argument("--repeat", type=int, default=9, help="runs of each set-up")
    parser.add_argument("--setups", default=",".join(SETUPS), help="of " + ",".join(SETUPS))
    parser.add_argument("--workdir", type=Path, help="keep the edges' and SIPp's logs here")
    args = parser.parse_args(argv)
    setups = [s for s in args.setups.split(",") if s]
    if "off" not in setups or any(s not in SETUPS for s in setups) or args.repeat < 1:
        parser.error(f"--setups: some of {', '.join(SETUPS)}, off among them; --repeat ≥ 1")
    raise_open_files_limit()
    try:
        with work_directory(args.workdir) as workdir:
            rows, per_call = bench(setups, args.rate, args.duration, args.repeat, workdir)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"{args.rate} cps for {args.duration:g} s, medians of {args.repeat} alternating runs; "
        f"HEP packets per call of udp: {per_call:.1f}"
    )
    print_rows(rows, "off")
    print(f"load average at the end: {load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
