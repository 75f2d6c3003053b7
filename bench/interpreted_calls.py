"""Which Python functions the edge still runs interpreted per call, counted at the wire.

Run ``python -m bench.interpreted_calls [--rate 300] [--duration 10] [--top 25]`` (or
``python -m bench interpreted_calls``). The edge (``python -m services.edge``, two workers,
the default build) starts with `bench/interpreted_hook` first on its path: each of its
processes counts every call of a function that runs as Python (compiled code makes no
frame, so is not counted). SIPp offers the wire benchmark's calls once to warm it up,
then once more between two readings of the counts; the difference over the calls offered
is what a call asks of the interpreter: the benchmark's own count, not a profile's sample.

Why: the compiled edge's CPU per call hides the Python it still runs (a function a
compiled caller reaches through a callable, a dataclass's generated `__init__` or
`__hash__`, a module left out of the build); each costs a frame, about half a
microsecond, and none shows up in the proxy core's callgrind count. The counting slows
the edge several times over, so the rate is low and the CPU is not reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from bench.proxy.callmesh import REPO, CallmeshEdge
from bench.proxy.errors import BenchError
from bench.proxy.run import measure, raise_open_files_limit, work_directory
from bench.proxy.setups import one_rate, running_edges
from bench.proxy.sipp import running_gateways
from deploy.labs.ports import free_port

HOOK = Path(__file__).resolve().parent / "interpreted_hook"
SETTLE_S = 1.5
"""Wait this long after a run before reading the counts: each process writes them twice a
second, so the reading then holds every call of the run (and the edge's idle timers' few
over these seconds, beside some 3,000 calls)."""


def read_counts(folder: Path) -> Counter[str]:
    """Every process's counts so far, summed by function (``file:line:name``)."""
    total: Counter[str] = Counter()
    for path in folder.iterdir():
        if path.suffix == ".tmp":
            continue
        for line in path.read_text().splitlines():
            count, _, where = line.partition("\t")
            total[where.replace(f"{REPO}/", "")] += int(count)
    return total


def edge_counting_into(folder: Path) -> CallmeshEdge:
    return CallmeshEdge(
        port=free_port(),
        http_port=free_port(),
        namespace="bench-interpreted",  # each launch empties its namespace first
        env={
            "PYTHONPATH": f"{HOOK}:{REPO}",
            "CALLMESH_BENCH_INTERPRETED": str(folder),
            "CALLMESH_OVERLOAD_LAG_MS": "0",  # a counted, slower loop must not shed calls
        },
    )


def bench(rate: int, duration: float, workdir: Path) -> tuple[Counter[str], int, int]:
    """Interpreted calls during one run of calls, by function; the calls offered; failed."""
    wire = one_rate(rate, duration, workdir)
    folder = workdir / "counts"
    folder.mkdir()
    with (
        running_gateways(wire.table, workdir, wire.config.recv_timeout_ms),
        running_edges({"edge": edge_counting_into(folder)}, wire.table, workdir) as edges,
    ):
        edge, pid = edges["edge"]
        for tag in ("warm-up", "counted"):
            time.sleep(SETTLE_S)
            before = read_counts(folder)
            result = measure(
                pid, wire.plan, proxy_port=edge.port, config=wire.config, workdir=workdir,
                numbers=wire.numbers, tag=tag,
            )  # fmt: skip # one run's parts
            time.sleep(SETTLE_S)
            after = read_counts(folder)  # read while the edge runs: not its shutdown
    return after - before, result.attempted, result.unsuccessful


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interpreted_calls")
    parser.add_argument("--rate", type=int, default=300, help="calls offered per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls per run")
    parser.add_argument("--top", type=int, default=25, help="functions listed")
    parser.add_argument("--workdir", type=Path, help="keep the edge's and SIPp's logs here")
    args = parser.parse_args(argv)
    if args.rate < 1 or args.duration <= 0 or args.top < 0:
        parser.error("--rate ≥ 1, --duration > 0, --top ≥ 0")
    raise_open_files_limit()
    try:
        with work_directory(args.workdir) as workdir:
            counts, calls, failed = bench(args.rate, args.duration, workdir)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    if not calls:
        print("bench: no call was offered", file=sys.stderr)
        return 1
    ours = sum(n for where, n in counts.items() if where.startswith(("services/", "shared/")))
    print(f"{calls} calls at {args.rate} cps ({failed} failed), the edge's processes together:")
    total = counts.total()
    print(f"interpreted calls per call: {total / calls:.1f}, of them ours: {ours / calls:.1f}")
    print(f"{'per call':>9}  function")
    for where, count in counts.most_common(args.top):
        print(f"{count / calls:9.2f}  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
