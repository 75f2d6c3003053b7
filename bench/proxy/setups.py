"""Set-ups of the real edge measured in turn on the wire, each net of its idle CPU.

The wire benchmarks that compare edges configured differently (HEP off and on,
media relayed and not) start one edge per set-up, all at once, and offer the
same calls to each in turn, the order turning every repeat, so each set-up sees
the same machine: on a shared two-core machine a figure means something only
beside another one measured minutes apart at most.  A run's CPU is the edge's
process tree's from its first call until a second after its last, less what the
edge would have spent idle meanwhile (probes, timers, the bus: read for 2 s
before the run), per call offered.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench.proxy.callmesh import CallmeshEdge
from bench.proxy.cpu import tree_cpu_times
from bench.proxy.proxy import running_proxy
from bench.proxy.results import RunResult
from bench.proxy.routing import RoutingTable, seed_table
from bench.proxy.run import BenchConfig, measure
from bench.proxy.sipp import CallPlan, write_numbers
from deploy.labs.ports import free_port

IDLE_SAMPLE = 2.0
"""Seconds the edge's idle CPU is read before each run."""


@dataclass(frozen=True, slots=True)
class Row:
    setup: str
    cpu_us: float
    kernel_us: float
    idle_us: float
    """The edge's CPU per call it spends idle (probes, timers), taken out of ``cpu_us``."""
    failed_pct: float
    ratios: list[float]
    """Each repeat's CPU per call over the baseline set-up's in the same repeat."""
    answer_ms: float = 0.0
    """The median of the runs' mean times from a call's INVITE to its 200 (SIPp's)."""


@dataclass(frozen=True, slots=True)
class OneRate:
    """A wire benchmark at one rate: its configuration, the seed table on two free gateway
    ports, the call plan, and the caller's numbers written into the work directory."""

    config: BenchConfig
    table: RoutingTable
    plan: CallPlan
    numbers: Path


def one_rate(rate: int, duration: float, workdir: Path) -> OneRate:
    gateways = (free_port(), free_port())
    config = BenchConfig(rates=(rate,), duration_s=duration, gateway_ports=gateways)
    numbers = workdir / "numbers.csv"
    write_numbers(numbers, config.number_prefix)
    return OneRate(config, seed_table(*gateways), config.plan(rate), numbers)


@contextmanager
def running_edges(
    edges: Mapping[str, CallmeshEdge], table: RoutingTable, workdir: Path
) -> Iterator[dict[str, tuple[CallmeshEdge, int]]]:
    """Every set-up's edge with its process id, by set-up name, started together (their idle
    CPU is alike), each logging into its own folder of `workdir`."""
    with ExitStack() as stack:
        started = {}
        for setup, edge in edges.items():
            folder = workdir / setup
            folder.mkdir(exist_ok=True)
            process = stack.enter_context(running_proxy(edge, table, folder, ready_timeout=30))
            started[setup] = (edge, process.pid)
        yield started


def in_turn(setups: list[str], repeat: int) -> list[str]:
    """The set-ups in the order of repeat number `repeat`: each one first in turn."""
    start = repeat % len(setups)
    return setups[start:] + setups[:start]


def idle_rate(pid: int) -> float:
    """The edge's CPU seconds per second with no call (its probes, timers, bus)."""
    before = sum(tree_cpu_times(pid))
    time.sleep(IDLE_SAMPLE)
    return (sum(tree_cpu_times(pid)) - before) / IDLE_SAMPLE


def net_of_idle(result: RunResult, idle: float, seconds: float) -> RunResult:
    """The run's CPU less what the edge would have spent idle meanwhile: per call, what
    calls cost, however low the rate a loaded machine allows (at 100 cps an edge's idle CPU
    is a third of the figure; at 1000 cps a thirtieth)."""
    return replace(result, cpu_seconds=result.cpu_seconds - idle * seconds)


def measured_run(
    pid: int,
    port: int,
    plan: CallPlan,
    *,
    config: BenchConfig,
    workdir: Path,
    numbers: Path,
    tag: str,
) -> tuple[RunResult, float]:
    """One run of `plan` through the edge `pid` listening on `port`, net of its idle CPU,
    and that idle CPU (seconds over the run)."""
    idle = idle_rate(pid)
    started = time.monotonic()
    result = measure(
        pid,
        plan,
        proxy_port=port,
        config=replace(config, caller_port=free_port()),
        workdir=workdir,
        numbers=numbers,
        tag=tag,
    )
    seconds = time.monotonic() - started
    return net_of_idle(result, idle, seconds), idle * seconds


def alternating_runs(
    edges: Mapping[str, tuple[CallmeshEdge, int]],
    plan: CallPlan,
    repeat: int,
    *,
    config: BenchConfig,
    workdir: Path,
    numbers: Path,
    tag: str,
) -> dict[str, list[tuple[RunResult, float]]]:
    """`repeat` runs of `plan` through each edge of `edges` (by set-up name, with its process
    id), the order turning every repeat (`in_turn`): each set-up's runs, each net of its idle
    CPU, with that idle CPU (`measured_run`); their logs tagged `{setup}-{tag}-{repeat}`."""
    setups = list(edges)
    runs: dict[str, list[tuple[RunResult, float]]] = {setup: [] for setup in setups}
    for n in range(repeat):
        for setup in in_turn(setups, n):
            edge, pid = edges[setup]
            run = measured_run(
                pid, edge.port, plan, config=config, workdir=workdir, numbers=numbers,
                tag=f"{setup}-{tag}-{n}",
            )  # fmt: skip # one run's parts
            runs[setup].append(run)
    return runs


def row_of(setup: str, runs: list[tuple[RunResult, float]], baseline: list[float]) -> Row:
    """`setup`'s medians over its `runs` (each with its idle CPU seconds), and each run's CPU
    per call over `baseline`'s run of the same repeat."""
    return Row(
        setup,
        statistics.median(r.cpu_ms_per_call * 1000 for r, _ in runs),
        statistics.median(r.kernel_ms_per_call * 1000 for r, _ in runs),
        statistics.median(idle / r.attempted * 1e6 if r.attempted else 0.0 for r, idle in runs),
        statistics.median(r.failed_pct for r, _ in runs),
        [
            r.cpu_ms_per_call / b if b else float("nan")
            for (r, _), b in zip(runs, baseline, strict=True)
        ],
        statistics.median(r.answer_ms for r, _ in runs),
    )


def print_rows(rows: list[Row], baseline: str) -> None:
    """Each set-up's medians, and its CPU over `baseline`'s: the median of the repeats'
    ratios, with the lowest and highest of them."""
    print(
        f"{'setup':<6}{'CPU µs/call':>13}{'kernel':>9}{'idle':>7}{'failed %':>10}"
        f"{'÷ ' + baseline:>8}{'lowest':>8}{'highest':>9}{'answer ms':>11}"
    )
    for row in rows:
        print(
            f"{row.setup:<6}{row.cpu_us:>13.0f}{row.kernel_us:>9.0f}{row.idle_us:>7.0f}"
            f"{row.failed_pct:>10.2f}{statistics.median(row.ratios):>8.3f}"
            f"{min(row.ratios):>8.3f}{max(row.ratios):>9.3f}{row.answer_ms:>11.0f}"
        )
    print(
        f"÷ {baseline}: the median of each repeat's ratio; lowest, highest: of those ratios;"
        " answer ms: from the caller's INVITE to its 200, SIPp's mean (whole ms)"
    )
