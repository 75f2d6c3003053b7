"""What resting the edge's UDP sockets saves: CPU per call, `CALLMESH_UDP_COALESCE_MS` off and on.

Run ``python -m bench udp_coalesce [-- --rate 2000 --rests 5,10 --duration 10 --repeat 5]``
from the repository root.  The proxy benchmark's set-up (`bench.proxy`: two SIPp gateways,
the seed table in Redis, SIPp dialling through the edge), with one edge process (``python -m
services.edge``, two workers) per rest, all started at once and measured in turn,
alternating (`bench.proxy.setups`), so each sees the same machine.

Why: an edge worker's CPU per call falls as its calls come denser (one worker at 1000 calls a
second costs what each of two does at 2000 together), because each wake-up costs far more
than its own code: the process sleeps, is woken, and finds its caches cold.  A socket that
rests a few milliseconds after a burst that emptied it reads what came meanwhile as one
burst, for fewer wake-ups; each message waits up to that rest, and is timed by the kernel
as before.  Set-ups are named by the rest in milliseconds, ``0`` (the default, reading at
once) the baseline.  Printed per set-up: the medians over ``--repeat`` runs of CPU µs per
call (kernel part apart, the edge's idle CPU taken out), failed calls and SIPp's mean time
from a caller's INVITE to its 200 (``answer ms``: what the rests cost), and its CPU over
``0``'s as the median of each repeat's ratio, with the lowest and highest.  The edges shed
no load (``CALLMESH_OVERLOAD_LAG_MS=0``): refused calls would cost less than the calls they
replace.  The machine is shared: compare the ratios of one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.proxy.callmesh import CallmeshEdge
from bench.proxy.errors import BenchError
from bench.proxy.run import int_list, raise_open_files_limit, work_directory
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

BASELINE = "0"
"""The set-up that reads each socket at once, as by default."""


def edge_of(rest_ms: int) -> CallmeshEdge:
    return CallmeshEdge(
        port=free_port(),
        http_port=free_port(),
        namespace=f"bench-coalesce-{rest_ms}",  # each launch empties its namespace first
        env={"CALLMESH_UDP_COALESCE_MS": str(rest_ms), "CALLMESH_OVERLOAD_LAG_MS": "0"},
    )


def bench(rests: list[int], rate: int, duration: float, repeat: int, workdir: Path) -> list[Row]:
    """Each rest's medians at `rate`, the baseline's first."""
    wire = one_rate(rate, duration, workdir)
    setups = {str(rest): edge_of(rest) for rest in rests}
    with (
        running_gateways(wire.table, workdir, wire.config.recv_timeout_ms),
        running_edges(setups, wire.table, workdir) as edges,
    ):
        runs = alternating_runs(
            edges, wire.plan, repeat, config=wire.config, workdir=workdir,
            numbers=wire.numbers, tag=str(rate),
        )  # fmt: skip # one run's parts
    baseline = [r.cpu_ms_per_call for r, _ in runs[BASELINE]]
    return [row_of(setup, runs[setup], baseline) for setup in setups]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.udp_coalesce")
    parser.add_argument("--rate", type=int, default=2000, help="calls offered per second")
    parser.add_argument(
        "--rests", type=int_list, default=(5, 10), help="milliseconds, each beside 0"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each set-up")
    parser.add_argument("--workdir", type=Path, help="keep the edges' and SIPp's logs here")
    args = parser.parse_args(argv)
    rests = sorted({0, *args.rests})
    if rests[-1] > 100 or args.repeat < 1 or args.duration <= 0:
        parser.error("--rests: none over 100 (the setting's bound); --repeat ≥ 1; --duration > 0")
    raise_open_files_limit()
    try:
        with work_directory(args.workdir) as workdir:
            rows = bench(rests, args.rate, args.duration, args.repeat, workdir)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    print(
        f"{args.rate} cps for {args.duration:g} s, two workers an edge, medians of"
        f" {args.repeat} alternating runs; set-ups: the rest in ms"
    )
    print_rows(rows, BASELINE)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average at the end: {load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
