"""Benchmark runner: offered call rates through each proxy, failures and CPU per call.

For every proxy it starts the two SIPp gateways and the proxy with the seed
routing table, then offers each rate for a fixed time and reports the share of
calls that did not complete and the proxy's CPU time (whole process tree) per
call.  Run from the repository root::

    python -m bench.proxy.run --rates 500,1000,2000,3000 --duration 20 --json out.json
    python -m bench.proxy.run --quick
"""

from __future__ import annotations

import argparse
import functools
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from bench.proxy.all_in_one import AllInOne
from bench.proxy.callmesh import CallmeshEdge
from bench.proxy.cpu import tree_cpu_times
from bench.proxy.errors import BenchError
from bench.proxy.kamailio import Kamailio
from bench.proxy.proxy import ProxyUnderTest, running_proxy
from bench.proxy.results import RunResult, StepResult, results_json, table_header, table_row
from bench.proxy.routing import seed_table
from bench.proxy.sipp import (
    CALLER_SCENARIO,
    GATEWAY_SCENARIO,
    CallPlan,
    run_caller,
    running_gateways,
    write_numbers,
)


@dataclass(frozen=True, slots=True)
class BenchConfig:
    rates: tuple[int, ...] = (500, 1000, 2000, 3000)
    duration_s: float = 20.0
    repeat: int = 1
    hold_min_ms: int = 0
    hold_max_ms: int = 1000
    recv_timeout_ms: int = 10_000
    settle_s: float = 1.0
    gateway_ports: tuple[int, int] = (15071, 15072)
    caller_port: int = 15080
    number_prefix: str = "1407555"
    sipp: str = "sipp"
    caller_scenario: Path = CALLER_SCENARIO
    gateway_scenario: Path = GATEWAY_SCENARIO
    """SIPp's scenarios: the caller's and the gateways' (bench.media_relay_wire's carry SDP)."""

    def plan(self, rate: int) -> CallPlan:
        return CallPlan(
            rate=rate,
            calls=max(1, round(rate * self.duration_s)),
            hold_min_ms=self.hold_min_ms,
            hold_max_ms=self.hold_max_ms,
            recv_timeout_ms=self.recv_timeout_ms,
        )


QUICK = BenchConfig(rates=(50,), duration_s=2.0, hold_max_ms=200, settle_s=0.2)


# The proxies the runner knows, by --proxy name.  Callmesh's edge plugs in here:
# a class with ``name``, ``port`` and ``launch(table, workdir) -> Launch`` that
# provisions the table before the edge starts (see bench.proxy.proxy).
ProxyFactory = Callable[[argparse.Namespace], ProxyUnderTest]
PROXIES: dict[str, ProxyFactory] = {
    "kamailio": lambda args: Kamailio(port=args.kamailio_port),
    "callmesh": lambda args: CallmeshEdge(port=args.callmesh_port, workers=args.callmesh_workers),
    "callmesh-aio": lambda args: AllInOne(port=args.all_in_one_port),
}


def _print_row(proxy: str, step: StepResult) -> None:
    print(table_row(proxy, step), flush=True)


def raise_open_files_limit() -> None:
    """Up to the hard limit, for SIPp and the proxies, which inherit it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def measure(
    proxy_pid: int,
    plan: CallPlan,
    *,
    proxy_port: int,
    config: BenchConfig,
    workdir: Path,
    numbers: Path,
    tag: str,
) -> RunResult:
    """Offer ``plan`` once; CPU is the proxy tree's from before the first call to settled."""
    user_before, system_before = tree_cpu_times(proxy_pid)
    counts = run_caller(
        plan,
        proxy_port=proxy_port,
        caller_port=config.caller_port,
        numbers=numbers,
        workdir=workdir,
        tag=tag,
        sipp=config.sipp,
        scenario=config.caller_scenario,
    )
    # Timers that finish this step's transactions belong to this step's cost.
    time.sleep(config.settle_s)
    user_after, system_after = tree_cpu_times(proxy_pid)
    return RunResult(
        attempted=counts.attempted,
        successful=counts.successful,
        unsuccessful=counts.unsuccessful,
        cpu_seconds=user_after + system_after - user_before - system_before,
        system_seconds=system_after - system_before,
        failure_reasons=counts.failure_reasons,
        answer_ms=counts.answer_ms,
    )


def bench_proxy(
    proxy: ProxyUnderTest,
    config: BenchConfig,
    workdir: Path,
    on_step: Callable[[StepResult], None] = lambda _step: None,
) -> list[StepResult]:
    """Every rate of ``config`` through ``proxy``, with fresh gateways and proxy."""
    table = seed_table(*config.gateway_ports)
    numbers = workdir / "numbers.csv"
    write_numbers(numbers, config.number_prefix)
    steps = []
    with (
        running_gateways(
            table, workdir, config.recv_timeout_ms, config.sipp, config.gateway_scenario
        ),
        running_proxy(proxy, table, workdir) as process,
    ):
        for rate in config.rates:
            plan = config.plan(rate)
            runs = [
                measure(
                    process.pid,
                    plan,
                    proxy_port=proxy.port,
                    config=config,
                    workdir=workdir,
                    numbers=numbers,
                    tag=f"{proxy.name}-{rate}-{n}",
                )
                for n in range(config.repeat)
            ]
            step = StepResult.of(rate, config.duration_s, runs)
            on_step(step)
            steps.append(step)
    return steps


@contextmanager
def work_directory(path: Path | None) -> Iterator[Path]:
    """The given directory (kept for inspection) or a temporary one."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="callmesh-bench-") as temporary:
        yield Path(temporary)


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--proxy",
        action="append",
        choices=sorted(PROXIES),
        help="proxy to bench (repeatable; default all)",
    )
    parser.add_argument("--rates", type=int_list, help="offered calls per second, comma-separated")
    parser.add_argument("--duration", type=float, help="seconds of offered load per rate")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes: 50 cps for 2 s")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per rate; the median is reported"
    )
    parser.add_argument("--hold-min-ms", type=int, help="shortest time between ACK and BYE")
    parser.add_argument("--hold-max-ms", type=int, help="longest time between ACK and BYE")
    parser.add_argument(
        "--recv-timeout-ms", type=int, help="a call waiting longer for a message fails"
    )
    parser.add_argument("--kamailio-port", type=int, default=15060)
    parser.add_argument("--callmesh-port", type=int, default=15062)
    parser.add_argument("--callmesh-workers", type=int, default=2, help="edge worker processes")
    parser.add_argument("--all-in-one-port", type=int, default=15064)
    parser.add_argument("--gateway-ports", type=int_list, help="UDP ports of PSTN 1 and PSTN 2")
    parser.add_argument("--caller-port", type=int)
    parser.add_argument("--sipp", help="SIPp binary")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--workdir", type=Path, help="keep configs, logs and SIPp files here")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.gateway_ports is not None and len(args.gateway_ports) != 2:
        parser.error("--gateway-ports takes exactly two ports")
    return args


def config_from(args: argparse.Namespace) -> BenchConfig:
    """Defaults, then --quick sizes, then whatever was given explicitly."""
    given = {
        "rates": args.rates,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "hold_min_ms": args.hold_min_ms,
        "hold_max_ms": args.hold_max_ms,
        "recv_timeout_ms": args.recv_timeout_ms,
        "gateway_ports": args.gateway_ports,
        "caller_port": args.caller_port,
        "sipp": args.sipp,
    }
    base = QUICK if args.quick else BenchConfig()
    config = replace(base, **{name: value for name, value in given.items() if value is not None})
    if not 0 <= config.hold_min_ms <= config.hold_max_ms:
        raise BenchError("hold times need 0 <= --hold-min-ms <= --hold-max-ms")
    if config.duration_s <= 0 or config.recv_timeout_ms <= 0:
        raise BenchError("--duration and --recv-timeout-ms must be positive")
    return config


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    """Unwind like Ctrl-C does, so the proxy and SIPp processes are stopped too."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = parse_args(argv)
    try:
        config = config_from(args)
        raise_open_files_limit()
        results: dict[str, list[StepResult]] = {}
        print(table_header(), flush=True)
        with work_directory(args.workdir) as workdir:
            for name in args.proxy or sorted(PROXIES):
                proxy_dir = workdir / name
                proxy_dir.mkdir(exist_ok=True)
                results[name] = bench_proxy(
                    PROXIES[name](args),
                    config,
                    proxy_dir,
                    on_step=functools.partial(_print_row, name),
                )
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    if args.json is not None:
        args.json.write_text(results_json(asdict(config), results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
