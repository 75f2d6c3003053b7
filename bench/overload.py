"""An edge past its capacity: calls completed with and without shedding on a standing queue.

Run ``python -m bench overload [-- --rates 2000,3000 --cpus 0.7 --duration 30 --repeat 3]``
from the repository root, as root (a cgroup caps the edges' CPU: `bench.proxy.cpu_cap`).
The proxy benchmark's set-up (`bench.proxy`: two SIPp gateways, the seed table in Redis,
SIPp dialling through the edge), with one edge process (``python -m services.edge``, two
workers) per set-up, both started at once, capped together at ``--cpus`` CPUs (only the
one measured is busy) and measured in turn, alternating:

- ``lag``: the edge sheds on its loop's lag and its event backlog only
  (``CALLMESH_OVERLOAD_QUEUE_MS=0``), as before the queue was a signal;
- ``queue``: as by default, also on a queue standing in its sockets' buffers.

Why capped: here SIPp saturates (near 4000 calls/s) before two uncapped workers do, and
the case shedding is for is an edge offered more than it can take.  At 0.7 CPUs 2000
calls/s is about an edge's capacity (a run of one edge alone completed them all; beside
the other, idle, edge in the same group, not quite) and 3000 well past it.

Printed per rate and set-up, medians over ``--repeat`` runs: calls completed a second
(SIPp's successful calls over the run's duration), failed calls, those of them that timed
out waiting for a message (calls taken and lost, where a refusal is a 503 at once), the
edge's CPU per call SIPp attempted (net of its idle CPU); and the calls completed with ``queue``
over those with ``lag`` as the median of each repeat's ratio with its range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from bench.proxy.callmesh import CallmeshEdge
from bench.proxy.cpu import process_tree
from bench.proxy.cpu_cap import capped_cpu
from bench.proxy.errors import BenchError
from bench.proxy.results import RunResult
from bench.proxy.run import int_list, raise_open_files_limit, work_directory
from bench.proxy.setups import alternating_runs, one_rate, running_edges
from bench.proxy.sipp import running_gateways
from deploy.labs.ports import free_port

SETUPS = ("lag", "queue")
TIMED_OUT = "FailedTimeoutOnRecv"
"""SIPp's reason for a call that waited longer than its receive timeout for a message."""


def edge_of(setup: str) -> CallmeshEdge:
    env = {"CALLMESH_OVERLOAD_QUEUE_MS": "0"} if setup == "lag" else {}
    return CallmeshEdge(
        port=free_port(),
        http_port=free_port(),
        namespace=f"bench-overload-{setup}",  # each launch empties its namespace first
        env=env,
    )


def completed_per_second(run: RunResult, duration: float) -> float:
    return run.successful / duration


def timed_out_pct(run: RunResult) -> float:
    return 100 * run.failure_reasons.get(TIMED_OUT, 0) / run.attempted if run.attempted else 0.0


def bench(
    rate: int, duration: float, repeat: int, cpus: float, workdir: Path
) -> dict[str, list[RunResult]]:
    """Each set-up's runs at `rate`, the edges capped at `cpus` CPUs."""
    wire = one_rate(rate, duration, workdir)
    with (
        running_gateways(wire.table, workdir, wire.config.recv_timeout_ms),
        running_edges({setup: edge_of(setup) for setup in SETUPS}, wire.table, workdir) as edges,
        capped_cpu(f"callmesh-bench-overload-{os.getpid()}", cpus) as cap,
    ):
        for _edge, pid in edges.values():
            cap.add(process_tree(pid))
        runs = alternating_runs(
            edges, wire.plan, repeat, config=wire.config, workdir=workdir,
            numbers=wire.numbers, tag=str(rate),
        )  # fmt: skip # one run's parts
    return {setup: [run for run, _idle in runs[setup]] for setup in SETUPS}


def print_rate(rate: int, duration: float, runs: dict[str, list[RunResult]]) -> None:
    print(
        f"{rate} cps offered:\n{'setup':<7}{'completed/s':>12}{'failed %':>10}"
        f"{'timed out %':>13}{'CPU µs/call':>13}"
    )
    for setup in SETUPS:
        of = runs[setup]
        print(
            f"{setup:<7}{statistics.median(completed_per_second(r, duration) for r in of):>12.0f}"
            f"{statistics.median(r.failed_pct for r in of):>10.2f}"
            f"{statistics.median(timed_out_pct(r) for r in of):>13.2f}"
            f"{statistics.median(r.cpu_ms_per_call * 1000 for r in of):>13.0f}"
        )
    ratios = [
        queue.successful / lag.successful if lag.successful else float("inf")
        for lag, queue in zip(runs["lag"], runs["queue"], strict=True)
    ]
    print(
        f"completed, queue ÷ lag: {statistics.median(ratios):.2f}"
        f" (lowest {min(ratios):.2f}, highest {max(ratios):.2f})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.overload")
    parser.add_argument(
        "--rates", type=int_list, default=(2000, 3000), help="calls offered a second"
    )
    parser.add_argument("--cpus", type=float, default=0.7, help="the edges' CPU cap")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of calls per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each set-up")
    parser.add_argument("--workdir", type=Path, help="keep the edges' and SIPp's logs here")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.duration <= 0:
        parser.error("--repeat ≥ 1 and --duration > 0")
    raise_open_files_limit()
    print(
        f"edges capped at {args.cpus:g} CPUs, two workers each; {args.duration:g} s of calls"
        f" a run, medians of {args.repeat} alternating runs"
    )
    try:
        with work_directory(args.workdir) as workdir:
            for rate in args.rates:
                folder = workdir / str(rate)
                folder.mkdir()
                print_rate(
                    rate, args.duration, bench(rate, args.duration, args.repeat, args.cpus, folder)
                )
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average at the end: {load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
