"""Registration benchmark on the wire: SIPp REGISTERs with digest through one edge.

Run: ``.venv/bin/python -m bench.registrar_sipp [--subscribers N] [--runs K] [--rate R]
[--sipp P] [--registrars G] [--kamailio]`` against the RabbitMQ and Redis of the
environment (fresh namespace, removed afterwards).  The registrar(s) and one
edge run as their own processes (``python -m services.registrar``,
``python -m services.edge``).  The ``--subscribers`` are created first, then
registered in ``--runs`` runs of an equal share each, every subscriber once:
a run is ``--sipp`` SIPp processes reading their subscribers from an
injection file, together offering ``--rate`` registrations per second (each
is two REGISTERs: the 401 challenge and the authorized one).  Reported per
run and as the median over the runs: REGISTERs per second sustained, failed
registrations (SIPp's failed calls; 0 expected), and the CPU each component
used (seconds of CPU per second of wall time, i.e. cores).  Redis memory per
binding is measured over the bindings held at the end.

``--kamailio`` runs the same registrations against Kamailio's registrar
(usrloc in memory, ``auth_db`` over ``db_text``; see ``kamailio_registrar.cfg``)
in the same invocation, and prints both columns.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import functools
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy.cpu import PROC, tree_cpu_seconds
from bench.proxy.processes import log_tail, spawn, stop_session
from bench.registrar import (
    RABBITMQ_URL,
    REDIS_URL,
    ROOT,
    Phone,
    create_subscribers,
    memory_per_binding,
)
from deploy.labs.ports import free_port
from shared.bus.amqp import AmqpBus
from shared.contracts.registrar import REGISTER_QUEUE
from shared.sip.auth.digest import compute_ha1
from shared.store import Store

DOMAIN = "bench.example.com"
SCENARIO = Path(__file__).with_name("scenarios") / "register.xml"
KAMAILIO_CONFIG = Path(__file__).with_name("kamailio_registrar.cfg")
LOOPBACK = "127.0.0.1"


def wait_ready(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a service died: {log_tail(log)}")
        try:
            if httpx.get(f"http://{LOOPBACK}:{port}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"not ready: {log_tail(log)}")


def wait_udp(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until something is bound to UDP ``port`` (Kamailio has no readiness endpoint)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"kamailio died: {log_tail(log)}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                return
        time.sleep(0.1)
    raise SystemExit(f"kamailio not listening: {log_tail(log)}")


def write_injection(phones: Sequence[Phone], path: Path) -> None:
    """SIPp's -inf file: the user, then the whole authentication keyword (see the scenario)."""
    lines = ["SEQUENTIAL"]
    lines += [f"{p.user};[authentication username={p.user} password={p.password}]" for p in phones]
    path.write_text("\n".join(lines) + "\n")


def sipp_argv(injection: Path, calls: int, rate: float, sip_port: int, stats: Path) -> list[str]:
    return [
        "sipp",
        "-sf",
        str(SCENARIO),
        "-inf",
        str(injection),
        "-key",
        "domain",
        DOMAIN,
        "-auth_uri",
        DOMAIN,
        "-i",
        LOOPBACK,
        "-p",
        str(free_port()),
        "-t",
        "u1",
        "-m",
        str(calls),
        "-r",
        f"{rate:g}",
        "-rp",
        "1000",
        "-l",
        str(int(rate * 4) + 10),
        "-nostdin",
        "-nd",
        "-timeout",
        str(int(calls / rate * 3 + 60)),
        "-trace_stat",
        "-stf",
        str(stats),
        "-fd",
        "1",
        "-trace_err",
        "-error_file",
        str(stats.with_suffix(".err")),
        f"{LOOPBACK}:{sip_port}",
    ]


def sipp_totals(stats: Path) -> tuple[int, int]:
    """(SuccessfulCall(C), FailedCall(C)) of SIPp's last statistics line (-trace_stat)."""
    try:
        rows = list(csv.reader(stats.read_text().splitlines(), delimiter=";"))
    except FileNotFoundError:
        return 0, 0
    if len(rows) < 2:
        return 0, 0
    header, last = rows[0], rows[-1]
    return int(last[header.index("SuccessfulCall(C)")]), int(last[header.index("FailedCall(C)")])


def system_pid(command: str) -> int | None:
    """The pid of a shared daemon (RabbitMQ's ``beam.smp``, ``redis-server``) by its name."""
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == command:
                    return int(entry.name)
            except OSError:
                continue
    return None


@dataclass(frozen=True, slots=True)
class RunResult:
    registrations: int
    failed: int
    seconds: float
    cores: dict[str, float]
    """CPU seconds per wall second of each component during the run."""

    @property
    def register_rate(self) -> float:
        return 2 * self.registrations / self.seconds


class CpuMeter:
    """CPU of named process trees over an interval (the whole tree: forked workers count)."""

    def __init__(self, roots: dict[str, list[int]]) -> None:
        self.roots = roots
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: sum(map(tree_cpu_seconds, pids)) for name, pids in self.roots.items()}

    def start(self) -> None:
        self._start = self._now()

    def cores(self, seconds: float) -> dict[str, float]:
        end = self._now()
        return {name: (end[name] - self._start[name]) / seconds for name in self.roots}


async def register_run(
    phones: Sequence[Phone],
    args: argparse.Namespace,
    sip_port: int,
    *,
    workdir: Path,
    roots: dict[str, list[int]],
    tag: str,
) -> RunResult:
    """Register ``phones`` once each, split over ``args.sipp`` SIPp processes."""
    share = len(phones) // args.sipp
    slices = [phones[n * share : (n + 1) * share] for n in range(args.sipp)]
    sipps: list[int] = []
    meter = CpuMeter({**roots, "SIPp": sipps})
    meter.start()
    started = time.perf_counter()
    processes = []
    for index, chunk in enumerate(slices):
        injection = workdir / f"{tag}-{index}.csv"
        write_injection(chunk, injection)
        stats = workdir / f"{tag}-{index}.stats.csv"
        argv = sipp_argv(injection, len(chunk), args.rate / args.sipp, sip_port, stats)
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        processes.append((process, stats))
        sipps.append(process.pid)
    cores: dict[str, float] = {}
    while any(process.returncode is None for process, _ in processes):
        cores = meter.cores(time.perf_counter() - started)  # sampled while SIPp still lives
        await asyncio.sleep(0.5)
    elapsed = time.perf_counter() - started
    totals = [sipp_totals(stats) for _, stats in processes]
    registered = sum(ok for ok, _ in totals)
    # A registration SIPp never finished (it timed out, died) counts as failed too.
    return RunResult(registered, share * args.sipp - registered, elapsed, cores)


async def callmesh_runs(
    args: argparse.Namespace, phones: list[Phone], workdir: Path, store: Store, env: dict[str, str]
) -> tuple[list[RunResult], float]:
    sip_port, edge_http = free_port(), free_port()
    registrars = []
    for index in range(args.registrars):
        port = free_port()
        log = workdir / f"registrar-{index}.log"
        process = spawn(
            [sys.executable, "-m", "services.registrar"],
            log,
            ROOT,
            {
                **env,
                "CALLMESH_HTTP_LISTEN": f"{LOOPBACK}:{port}",
                "CALLMESH_INSTANCE": f"registrar-{index}",
            },
        )
        registrars.append((process, port, log))
    edge_log = workdir / "edge.log"
    edge = spawn(
        [sys.executable, "-m", "services.edge"],
        edge_log,
        ROOT,
        {
            **env,
            "CALLMESH_HTTP_LISTEN": f"{LOOPBACK}:{edge_http}",
            "CALLMESH_SIP_LISTEN": f"udp:{LOOPBACK}:{sip_port}",
        },
    )
    try:
        for process, port, log in registrars:
            wait_ready(port, process, log)
        wait_ready(edge_http, edge, edge_log)
        roots = {
            "edge": [edge.pid],
            "registrar": [process.pid for process, _, _ in registrars],
            **shared_daemons(),
        }
        results = []
        for run, chunk in enumerate(runs_of(phones, args.runs)):
            result = await register_run(
                chunk, args, sip_port, workdir=workdir, roots=roots, tag=f"callmesh{run}"
            )
            results.append(result)
            print_run("callmesh", run, result)
        return results, await memory_per_binding(store, phones)
    finally:
        stop_session(edge)
        for process, _, _ in registrars:
            stop_session(process)


def shared_daemons() -> dict[str, list[int]]:
    found = {}
    for name, command in (("RabbitMQ", "beam.smp"), ("Redis", "redis-server")):
        pid = system_pid(command)
        if pid is not None:
            found[name] = [pid]
    return found


async def kamailio_runs(
    args: argparse.Namespace, phones: list[Phone], workdir: Path
) -> list[RunResult]:
    """The same registrations against Kamailio: registrar + usrloc (memory), auth_db (db_text)."""
    dbtext = workdir / "kamailio-dbtext"
    dbtext.mkdir()
    rows = [f"{p.user}:{DOMAIN}:{compute_ha1(p.user, DOMAIN, p.password)}" for p in phones]
    header = "id(int,auto) username(string) domain(string) ha1(string)"
    numbered = [f"{n}:{row}" for n, row in enumerate(rows, 1)]
    (dbtext / "subscriber").write_text("\n".join([header, *numbered]) + "\n")
    (dbtext / "version").write_text(
        "table_name(string) table_version(int)\nsubscriber:7\nlocation:9\n"
    )
    port = free_port()
    log = workdir / "kamailio.log"
    kamailio = spawn(
        [
            "kamailio",
            "-f",
            str(KAMAILIO_CONFIG),
            "-l",
            f"udp:{LOOPBACK}:{port}",
            "-A",
            f'BENCH_DB_URL="text://{dbtext}"',
            "-A",
            f'BENCH_DOMAIN="{DOMAIN}"',
            "-m",
            "1024",
            "-M",
            "64",
            "-P",
            str(workdir / "kamailio.pid"),
            "-DD",
            "-E",
        ],
        log,
        ROOT,
    )
    try:
        wait_udp(port, kamailio, log)
        roots = {"kamailio": [kamailio.pid], **shared_daemons()}
        results = []
        for run, chunk in enumerate(runs_of(phones, args.runs)):
            result = await register_run(
                chunk, args, port, workdir=workdir, roots=roots, tag=f"kamailio{run}"
            )
            results.append(result)
            print_run("kamailio", run, result)
        return results
    finally:
        stop_session(kamailio)


def runs_of(phones: list[Phone], runs: int) -> list[list[Phone]]:
    share = len(phones) // runs
    return [phones[n * share : (n + 1) * share] for n in range(runs)]


def print_run(name: str, run: int, result: RunResult) -> None:
    cores = ", ".join(f"{part} {value:.2f}" for part, value in result.cores.items())
    print(
        f"{name} run {run + 1}: {result.registrations} registrations in {result.seconds:.1f}s "
        f"= {result.register_rate:.0f} REGISTER/s, {result.failed} failed; cores: {cores}",
        flush=True,
    )


def cores_of(part: str, result: RunResult) -> float | None:
    return result.cores.get(part)


def server_cpu_ms(result: RunResult) -> float:
    """CPU of everything but SIPp per registration (two REGISTERs), in milliseconds."""
    cores = sum(value for part, value in result.cores.items() if part != "SIPp")
    return 1000 * cores * result.seconds / max(result.registrations, 1)


def print_table(
    args: argparse.Namespace, columns: dict[str, list[RunResult]], memory: float
) -> None:
    names = list(columns)
    title = {
        "callmesh": f"Callmesh (1 edge, {args.registrars} registrar)",
        "kamailio": "Kamailio (usrloc, auth_db)",
    }
    print(
        f"\nmedians of {args.runs} runs, {args.rate} registrations/s offered, "
        f"{len(next(iter(columns.values()))) and args.subscribers} subscribers"
    )
    print(f"{'':32}" + "".join(f"{title[n]:>32}" for n in names))

    def row(label: str, value: Callable[[RunResult], float | None], fmt: str) -> None:
        cells = []
        for name in names:
            values = [v for v in map(value, columns[name]) if v is not None]
            cells.append(format(statistics.median(values), fmt) if values else "-")
        print(f"{label:32}" + "".join(f"{cell:>32}" for cell in cells))

    row("registrations per run", lambda r: r.registrations, ".0f")
    row("REGISTER/s sustained", lambda r: r.register_rate, ".0f")
    row("failed registrations", lambda r: r.failed, ".0f")
    parts = dict.fromkeys(part for results in columns.values() for part in results[0].cores)
    for part in parts:
        row(f"CPU cores: {part}", functools.partial(cores_of, part), ".2f")
    row("CPU ms per registration (no SIPp)", server_cpu_ms, ".2f")
    print(f"{'Redis bytes per binding':32}{memory:>32.0f}")


async def run(args: argparse.Namespace) -> None:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="registrar-sipp-"))
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    env = {
        "CALLMESH_NAMESPACE": namespace,
        "CALLMESH_RABBITMQ_URL": RABBITMQ_URL,
        "CALLMESH_REDIS_URL": REDIS_URL,
        "CALLMESH_LOG_LEVEL": "WARNING",
        "CALLMESH_DIGEST_ALGORITHMS": "MD5",  # SIPp answers the first challenge, MD5 only
        "CALLMESH_REGISTRAR_WORKERS": str(args.workers),
    }
    phones = [Phone(f"u{n}", DOMAIN, f"pw{n}") for n in range(args.subscribers)]
    try:
        await create_subscribers(store, phones)
        columns: dict[str, list[RunResult]] = {}
        columns["callmesh"], memory = await callmesh_runs(args, phones, workdir, store, env)
        if args.kamailio:
            columns["kamailio"] = await kamailio_runs(args, phones, workdir)
        print_table(args, columns, memory)
        if any(result.failed for results in columns.values() for result in results):
            print(f"SIPp errors (first process): {log_tail(workdir / 'callmesh0-0.stats.err')}")
    finally:
        bus = AmqpBus(RABBITMQ_URL, namespace, "bench", "cleanup")
        await bus.start()
        await bus.declare_queue(REGISTER_QUEUE)
        await bus.declare_queue("routing.commands")
        await bus.delete_topology()
        await bus.close()
        await store.delete_namespace()
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="each registers its own share")
    parser.add_argument("--rate", type=int, default=600, help="registrations per second")
    parser.add_argument("--sipp", type=int, default=1, help="SIPp processes")
    parser.add_argument("--registrars", type=int, default=1, help="registrar processes")
    parser.add_argument("--workers", type=int, default=32, help="consumers per registrar")
    parser.add_argument("--kamailio", action="store_true", help="compare with Kamailio")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
