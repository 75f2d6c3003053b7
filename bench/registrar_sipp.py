"""Registration benchmark on the wire: SIPp REGISTERs with digest through one edge.

Run: ``.venv/bin/python -m bench.registrar_sipp [--registrations N] [--rate R] [--subscribers S]``
against the RabbitMQ and Redis of the environment (fresh namespace, removed
afterwards).  A registrar and one edge run as their own processes
(``python -m services.registrar``, ``python -m services.edge``); SIPp registers
``--registrations`` in all at ``--rate`` registrations
per second (each is two REGISTERs: the 401 challenge and the authorized one).
SIPp 3.6 takes digest credentials only from its command line, so
``--subscribers`` SIPp processes run side by side, one subscriber each, every
registration a fresh digest exchange with a new Call-ID.  The bindings held
at the end are few; Redis memory per binding at 100k bindings is measured by
``bench.registrar`` (queue level).  Reports REGISTERs per second over the
whole run and failures (SIPp's failed calls; 0 expected).  Kamailio's
registrar is not run here.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import redis.asyncio as aioredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy.processes import log_tail, spawn, stop_session
from bench.registrar import (
    RABBITMQ_URL,
    REDIS_URL,
    ROOT,
    Phone,
    create_subscribers,
    memory_per_binding,
)
from services.registrar.protocol import REGISTER_QUEUE
from shared.bus.amqp import AmqpBus
from shared.store import Store

DOMAIN = "bench.example.com"
SCENARIO = Path(__file__).with_name("scenarios") / "register.xml"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


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


def sipp_argv(phone: Phone, calls: int, rate: float, sip_port: int, workdir: Path) -> list[str]:
    return [
        "sipp", "-sf", str(SCENARIO), "-s", phone.user, "-au", phone.user, "-ap", phone.password,
        "-key", "domain", DOMAIN, "-auth_uri", DOMAIN, "-i", LOOPBACK, "-p", str(free_port()),
        "-t", "u1", "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000",
        "-l", str(int(rate * 4) + 10),
        "-nostdin", "-timeout", str(int(calls / rate * 3 + 60)), "-trace_stat", "-stf",
        str(workdir / f"{phone.user}.csv"), "-fd", "1", "-trace_err", "-error_file",
        str(workdir / f"{phone.user}.err"), f"{LOOPBACK}:{sip_port}",
    ]  # fmt: skip


def failed_calls(stats: Path) -> int | None:
    """FailedCall(C) of SIPp's last statistics line (-trace_stat), or None without one."""
    try:
        rows = list(csv.reader(stats.read_text().splitlines(), delimiter=";"))
    except FileNotFoundError:
        return None
    if len(rows) < 2:
        return None
    return int(rows[-1][rows[0].index("FailedCall(C)")])


async def run(args: argparse.Namespace) -> None:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    workdir = Path(tempfile.mkdtemp(prefix="registrar-sipp-"))
    store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    sip_port, edge_http, registrar_http = free_port(), free_port(), free_port()
    env = {
        "CALLMESH_NAMESPACE": namespace,
        "CALLMESH_RABBITMQ_URL": RABBITMQ_URL,
        "CALLMESH_REDIS_URL": REDIS_URL,
        "CALLMESH_LOG_LEVEL": "WARNING",
        "CALLMESH_DIGEST_ALGORITHMS": "MD5",  # SIPp answers the first challenge, MD5 only
        "CALLMESH_REGISTRAR_WORKERS": str(args.workers),
    }
    phones = [Phone(f"u{n}", DOMAIN, f"pw{n}") for n in range(args.subscribers)]
    await create_subscribers(store, phones)
    registrar_log, edge_log = workdir / "registrar.log", workdir / "edge.log"
    registrar = spawn(
        [sys.executable, "-m", "services.registrar"], registrar_log, ROOT,
        {**env, "CALLMESH_HTTP_LISTEN": f"{LOOPBACK}:{registrar_http}"},
    )  # fmt: skip
    edge = spawn(
        [sys.executable, "-m", "services.edge"], edge_log, ROOT,
        {**env, "CALLMESH_HTTP_LISTEN": f"{LOOPBACK}:{edge_http}",
         "CALLMESH_SIP_LISTEN": f"udp:{LOOPBACK}:{sip_port}"},
    )  # fmt: skip
    try:
        wait_ready(registrar_http, registrar, registrar_log)
        wait_ready(edge_http, edge, edge_log)
        each = args.registrations // len(phones)
        rate = args.rate / len(phones)
        started = time.perf_counter()
        runs = [
            await asyncio.create_subprocess_exec(
                *sipp_argv(phone, each, rate, sip_port, workdir),
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for phone in phones
        ]
        codes = [await run.wait() for run in runs]
        elapsed = time.perf_counter() - started
        failed = [failed_calls(workdir / f"{phone.user}.csv") for phone in phones]
        done = each * len(phones)
        print(f"{'':30} {'Callmesh (1 edge, 1 registrar)':>30}")
        print(f"{'registrations (2 REGISTER each)':30} {done:>30}")
        print(f"{'offered registrations/s':30} {args.rate:>30}")
        print(f"{'REGISTER/s sustained':30} {2 * done / elapsed:>30.0f}")
        print(f"{'failed registrations':30} {sum(f or 0 for f in failed):>30}")
        print(f"{'SIPp exit codes':30} {','.join(map(str, sorted(set(codes)))):>30}")
        print(f"{'Redis bytes per binding':30} {await memory_per_binding(store, phones):>30.0f}")
        if any(codes):
            print(f"SIPp errors: {log_tail(workdir / 'u0.err')}")
    finally:
        for process in (edge, registrar):
            stop_session(process)
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
    parser.add_argument("--registrations", type=int, default=60_000)
    parser.add_argument("--rate", type=int, default=550, help="registrations per second")
    parser.add_argument("--subscribers", type=int, default=8, help="SIPp processes")
    parser.add_argument("--workers", type=int, default=32, help="registrar consumers")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
