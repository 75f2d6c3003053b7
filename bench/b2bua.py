"""What carrying calls as a B2BUA costs a real edge on the wire: CPU per call in B2BUA mode
beside proxy mode, SIPp at 500 and 1000 cps, and the Redis bytes each live B2BUA call holds.

Run ``python -m bench b2bua [-- --rate 500,1000 --calls 5000 --repeat 5 --live 200]`` from
the repository root.  The proxy benchmark's set-up (`bench.proxy`: two SIPp gateways, the seed
table in Redis, SIPp dialling through the edge along the route set), with one edge process
(``python -m services.edge``, two workers) per set-up, started at once and measured in turn,
alternating (``bench/proxy/setups.py``, as ``bench.capture_wire``):

- ``proxy``: the seed table's rules as they are (``mode: proxy``, the default);
- ``b2bua``: the same rules with ``"mode": "b2bua"`` (docs/b2bua.md): the edge answers the
  caller and calls the gateway anew, each leg its own dialog, the pair's state written to
  Redis when answered and deleted at its end.

First, on the ``b2bua`` edge, ``--live`` calls are placed at 100 cps and held until all of
them are answered: the Redis bytes per live call are the ``MEMORY USAGE`` (every sample) of
the namespace's B2BUA keys (a pair hash and a key per leg's dialog) summed, over the pairs
found (``INFO used_memory`` grown meanwhile is no figure on a Redis other processes share:
it went negative in a trial).  Then each rate (``--rate``,
each in turn) offers ``--calls`` calls a run to each edge, ``--repeat`` times.  Printed, per
rate: per set-up the median over the runs of the edge's process tree's CPU µs per call
(kernel part apart, net of its idle CPU) and failed calls; its CPU over ``proxy``'s as the
median of each repeat's ratio with the lowest and highest of them.  Redis's own CPU for the
pairs' writes is not the edge's and is not counted (the server is shared).  The edges shed no
load (``CALLMESH_OVERLOAD_LAG_MS=0``).  The machine is shared: compare the ratios of one run,
not figures across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from redis import Redis

from bench.proxy.callmesh import CallmeshEdge
from bench.proxy.errors import BenchError
from bench.proxy.routing import seed_table
from bench.proxy.run import BenchConfig, int_list, raise_open_files_limit, work_directory
from bench.proxy.setups import Row, alternating_runs, row_of, running_edges
from bench.proxy.sipp import CallPlan, run_caller, running_gateways, write_numbers
from bench.proxy.sipp_stats import CallCounts
from deploy.labs.namespaces import REDIS_URL
from deploy.labs.ports import free_port
from shared.dispatcher.model import Mode

SETUPS: dict[str, Mode] = {"proxy": "proxy", "b2bua": "b2bua"}
LIVE_RATE = 100
"""Calls per second placed for the Redis measurement."""
LIVE_SETTLE = 10.0
"""Seconds the live calls' pairs may take to appear after the last call is placed (they are
held that long past it), and to go once the calls ended."""
MAX_LIVE = 2000
MAX_CALLS = 100_000


def edges_of() -> dict[str, CallmeshEdge]:
    """Every set-up's edge, by set-up name."""
    return {
        setup: CallmeshEdge(
            port=free_port(),
            http_port=free_port(),
            namespace=f"bench-b2bua-{setup}",  # each launch empties its namespace first
            mode=mode,
            # CPU per call, not shedding, is measured (as in bench.capture_wire).
            env={"CALLMESH_OVERLOAD_LAG_MS": "0"},
        )
        for setup, mode in SETUPS.items()
    }


@dataclass(frozen=True, slots=True)
class LivePairs:
    """The B2BUA edge's Redis state while `calls` calls were live."""

    counts: CallCounts
    """The live calls as SIPp counted them."""
    pairs: int
    keys: int
    memory_usage: int
    """``MEMORY USAGE`` of the ``keys``, summed (bytes)."""
    left: int
    """The namespace's B2BUA keys once the calls ended (0 within `LIVE_SETTLE` s)."""


def b2bua_keys(redis: Redis, namespace: str, kind: str = "") -> list[bytes]:
    return list(redis.scan_iter(f"{namespace}:b2bua:{kind}*", count=1000))


def wait_for(redis: Redis, namespace: str, pairs: int, deadline: float) -> int:
    """The pair records in Redis, once there are `pairs` of them or at `deadline`."""
    while (found := len(b2bua_keys(redis, namespace, "pair:"))) < pairs:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    return found


def live_pairs(
    edge: CallmeshEdge,
    redis: Redis,
    calls: int,
    *,
    config: BenchConfig,
    workdir: Path,
    numbers: Path,
) -> LivePairs:
    """`calls` calls placed through `edge` and held until all are answered; what Redis holds
    for them then, and once they ended."""
    placing = calls / LIVE_RATE
    hold_ms = round((placing + LIVE_SETTLE) * 1000)
    plan = CallPlan(LIVE_RATE, calls, hold_ms, hold_ms, config.recv_timeout_ms)
    with ThreadPoolExecutor(1) as pool:
        offered = pool.submit(
            run_caller, plan, proxy_port=edge.port, caller_port=free_port(), numbers=numbers,
            workdir=workdir, tag="live", sipp=config.sipp,
        )  # fmt: skip # the caller's parts
        pairs = wait_for(redis, edge.namespace, calls, time.monotonic() + placing + LIVE_SETTLE / 2)
        keys = b2bua_keys(redis, edge.namespace)
        with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.memory_usage(key, samples=0)
            sizes = pipe.execute()
        counts = offered.result()
    deadline = time.monotonic() + LIVE_SETTLE
    while (left := len(b2bua_keys(redis, edge.namespace))) and time.monotonic() < deadline:
        time.sleep(0.2)
    return LivePairs(counts, pairs, len(keys), sum(size or 0 for size in sizes), left)


@dataclass(frozen=True, slots=True)
class Step:
    rate: int
    rows: list[Row]


def bench(
    rates: tuple[int, ...], calls: int, repeat: int, live: int, workdir: Path
) -> tuple[LivePairs, list[Step]]:
    gateways = (free_port(), free_port())
    config = BenchConfig(rates=rates, gateway_ports=gateways)
    table = seed_table(*gateways)
    numbers = workdir / "numbers.csv"
    write_numbers(numbers, config.number_prefix)
    steps = []
    with (
        Redis.from_url(REDIS_URL) as redis,
        running_gateways(table, workdir, config.recv_timeout_ms),
        running_edges(edges_of(), table, workdir) as edges,
    ):
        b2bua, _pid = edges["b2bua"]
        held = live_pairs(b2bua, redis, live, config=config, workdir=workdir, numbers=numbers)
        for rate in rates:
            plan = replace(config.plan(rate), calls=calls)
            runs = alternating_runs(
                edges, plan, repeat, config=config, workdir=workdir, numbers=numbers, tag=str(rate)
            )
            proxy = [r.cpu_ms_per_call for r, _ in runs["proxy"]]
            steps.append(Step(rate, [row_of(setup, runs[setup], proxy) for setup in SETUPS]))
    return held, steps


def report(held: LivePairs, steps: list[Step], calls: int, repeat: int) -> None:
    print(f"{calls} calls a run at each rate, medians of {repeat} alternating runs")
    print(
        f"{'cps':>5} {'setup':<7}{'CPU µs/call':>13}{'kernel':>9}{'idle':>7}{'failed %':>10}"
        f"{'÷ proxy':>9}{'lowest':>8}{'highest':>9}"
    )
    for step in steps:
        for row in step.rows:
            print(
                f"{step.rate:>5} {row.setup:<7}{row.cpu_us:>13.0f}{row.kernel_us:>9.0f}"
                f"{row.idle_us:>7.0f}{row.failed_pct:>10.2f}{statistics.median(row.ratios):>9.3f}"
                f"{min(row.ratios):>8.3f}{max(row.ratios):>9.3f}"
            )
    print("÷ proxy: the median of each repeat's ratio; lowest, highest: of those ratios")
    pairs = max(held.pairs, 1)
    print(
        f"Redis per live B2BUA call: {held.counts.attempted} calls held "
        f"({held.counts.unsuccessful} not ended well), {held.pairs} pairs, {held.keys} keys; "
        f"MEMORY USAGE {held.memory_usage / pairs:,.0f} B per call; "
        f"keys left after the calls ended: {held.left}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.b2bua")
    parser.add_argument(
        "--rate", type=int_list, default=(500, 1000), help="calls offered per second, each in turn"
    )
    parser.add_argument("--calls", type=int, default=5000, help="calls offered per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each set-up per rate")
    parser.add_argument(
        "--live", type=int, default=200, help="B2BUA calls held live for the Redis figure"
    )
    parser.add_argument("--workdir", type=Path, help="keep the edges' and SIPp's logs here")
    args = parser.parse_args(argv)
    if not (1 <= args.calls <= MAX_CALLS and 1 <= args.live <= MAX_LIVE and args.repeat >= 1):
        parser.error(f"1 ≤ --calls ≤ {MAX_CALLS}, 1 ≤ --live ≤ {MAX_LIVE}, --repeat ≥ 1")
    raise_open_files_limit()
    try:
        with work_directory(args.workdir) as workdir:
            held, steps = bench(args.rate, args.calls, args.repeat, args.live, workdir)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    report(held, steps, args.calls, args.repeat)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average at the end: {load}")
    if held.left and not held.counts.unsuccessful:
        print("bench: B2BUA keys left after calls that all ended well", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
