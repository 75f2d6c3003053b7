"""What the accounting wire tests share: the seed table on a real edge, SIPp as its gateways
and callers, accounting processes on PostgreSQL, and SIPp's own view of each call.

Everything is a real process on loopback: the edge and the routing service
(`tests.services.edge.support`), `python -m services.accounting` (as many
instances as a test starts, killable with SIGKILL), RabbitMQ, Redis and a
fresh PostgreSQL database.  The routing table is `deploy.seed`'s, its
gateways on consecutive free ports.  A call's record is read back through
the accounting API, the way billing reads it, and compared with what SIPp
itself saw of the call (its message trace, stamped to the microsecond).
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from deploy.labs.ports import free_port
from deploy.labs.postgres import drop_postgres, fresh_postgres
from deploy.processes import stop_process
from deploy.seed import ROUTES, SeedRoute, gateway_ports, seed_records
from shared.contracts.accounting import CALLS_QUEUE
from tests.services.edge.support import (
    LOOPBACK,
    READY_WITHIN,
    REPO,
    Edge,
    Sipp,
    delete_queues,
    refusing_scenario,
    running_edge,
    sipp,
    wait_bound,
)

SCENARIOS = Path(__file__).with_name("scenarios")
ROUTE = {route.outcome: route for route in ROUTES}


@dataclass(frozen=True)
class Expected:
    """What a call of one seed outcome must leave in its record."""

    disposition: str
    status: int
    gateway: str | None
    attempts: tuple[tuple[str, int], ...]


EXPECTED = {
    "answer": Expected("answered", 200, "seed-answer", (("seed-answer", 200),)),
    "busy": Expected("busy", 486, None, (("seed-busy", 486),)),
    "failover": Expected(
        "answered", 200, "seed-backup", (("seed-down", 503), ("seed-backup", 200))
    ),
    "ring": Expected("cancelled", 487, None, (("seed-ring", 487),)),
    "unrouted": Expected("unrouted", 404, None, ()),
}
HOLD_MS = {"answer": 700, "failover": 300}
"""How long the callers of answered calls talk before their BYE."""


def consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive ports free on UDP and TCP right now."""
    while True:
        first = free_port()
        if all(_free(first + n) for n in range(1, count)):
            return first


def _free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


# ----- SIPp's own view of its calls --------------------------------------------------------

_BLOCK = re.compile(
    r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n\w+ message (sent|received)[^\n]*\n\n(.*?)"
    r"(?=^-{20,} \d{4}-|\Z)",
    re.MULTILINE | re.DOTALL,
)


@dataclass
class SippCall:
    """One call as a SIPp caller traced it: when the 2xx came, when the BYE went or came."""

    answered_at: float | None = None
    bye_at: float | None = None

    @property
    def duration_ms(self) -> float | None:
        if self.answered_at is None or self.bye_at is None:
            return None
        return (self.bye_at - self.answered_at) * 1000


def traced_calls(caller: Sipp) -> dict[str, SippCall]:
    """Every Call-ID `caller` placed, with the first 2xx to its INVITE and the first BYE."""
    calls: dict[str, SippCall] = {}
    for stamp, _, message in _BLOCK.findall(caller.messages()):
        found = re.search(r"^Call-ID:\s*(\S+)", message, re.MULTILINE | re.IGNORECASE)
        if found is None:
            continue
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        call = calls.setdefault(found.group(1), SippCall())
        first_line = message.split("\n", 1)[0]
        invite = re.search(r"^CSeq:\s*\d+ INVITE", message, re.MULTILINE) is not None
        if first_line.startswith("SIP/2.0 2") and invite and call.answered_at is None:
            call.answered_at = at
        elif first_line.startswith("BYE ") and call.bye_at is None:
            call.bye_at = at
    return calls


# ----- the accounting processes ------------------------------------------------------------


@dataclass
class Accounting:
    """`python -m services.accounting` instances on one namespace, queue and database."""

    env: dict[str, str]
    workdir: Path
    running: dict[str, tuple[subprocess.Popen[bytes], int]] = field(default_factory=dict)
    starts: int = 0

    def start(self, name: str) -> None:
        self.starts += 1
        port = free_port()
        env = dict(self.env, CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{port}", CALLMESH_INSTANCE=name)
        log = open(self.workdir / f"{name}-{self.starts}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "services.accounting"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
        )
        self.running[name] = (process, port)
        deadline = time.monotonic() + READY_WITHIN
        while time.monotonic() < deadline:
            assert process.poll() is None, self.log()
            try:
                if self.api(name).get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"accounting {name} not ready: {self.log()}")

    def kill(self, name: str) -> None:
        """SIGKILL: no goodbye, its unacknowledged messages go back to the queue."""
        process, _ = self.running.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self, name: str) -> None:
        process, _ = self.running.pop(name)
        stop_process(process)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def api(self, name: str | None = None) -> httpx.Client:
        _, port = self.running[name or next(iter(self.running))]
        return httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=10.0)

    def log(self) -> str:
        return "".join(p.read_text(errors="replace")[-3000:] for p in self.workdir.glob("acc*.log"))

    def records(self, since: float) -> list[dict[str, Any]]:
        """Every record set up since `since` (Unix time), all pages."""
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 1000, "since": since}
        with self.api() as client:
            while True:
                reply = client.get("/v1/cdrs", params=params)
                reply.raise_for_status()
                page = reply.json()
                found.extend(page["items"])
                if page["next_cursor"] is None:
                    return found
                params["cursor"] = page["next_cursor"]

    def settled(
        self, call_ids: set[str], since: float, timeout: float = 60.0
    ) -> dict[str, list[dict[str, Any]]]:
        """Each call's records, once every call in `call_ids` has a complete one."""
        deadline = time.monotonic() + timeout
        while True:
            by_call: dict[str, list[dict[str, Any]]] = {}
            for record in self.records(since):
                by_call.setdefault(record["call_id"], []).append(record)
            complete = {
                call_id
                for call_id, records in by_call.items()
                if all(record["state"] == "complete" for record in records)
            }
            missing = call_ids - complete
            if not missing:
                return by_call
            if time.monotonic() > deadline:
                sample = sorted(missing)[:5]
                raise AssertionError(
                    f"{len(missing)} of {len(call_ids)} calls without a complete record, e.g."
                    f" {[(c, by_call.get(c)) for c in sample]}"
                )
            time.sleep(0.5)


# ----- the platform ------------------------------------------------------------------------


@dataclass
class Platform:
    """An edge routing with the seed table, its gateways' ports, and the accounting side."""

    edge: Edge
    accounting: Accounting
    first_port: int
    workdir: Path
    calls: int = 0

    @property
    def ports(self) -> dict[str, int]:
        return gateway_ports(self.first_port)

    def gateways(self, per_outcome: int, *, answer: tuple[str, ...] = ()) -> list[Sipp]:
        """The seed's gateways, each taking the calls `per_outcome` calls of each outcome
        bring it (`answer`: more SIPp arguments for the answering gateway)."""
        ports = self.ports
        plays: dict[str, tuple[str | Path, tuple[str, ...]]] = {
            "seed-answer": ("gateway", answer),
            "seed-busy": (refusing_scenario(self.workdir, 486, "Busy Here"), ()),
            "seed-down": (refusing_scenario(self.workdir, 503, "Service Unavailable"), ()),
            "seed-backup": ("gateway", ()),
            "seed-ring": ("gateway_ringing", ()),
        }
        started = []
        for gateway, (scenario, args) in plays.items():
            port = ports[gateway]
            started.append(sipp(self.workdir, scenario, port, calls=per_outcome, args=args))
            wait_bound(port)
        return started

    def caller(self, outcome: str, calls: int, rate: float, *, hold_ms: int | None = None) -> Sipp:
        """A SIPp caller placing `calls` calls of `outcome` at `rate` calls/s (an answered
        one talks `hold_ms`, by default `HOLD_MS`)."""
        route: SeedRoute = ROUTE[outcome]
        args = ["-s", route.number, "-r", str(rate)]
        if outcome in HOLD_MS:
            args += ["-set", "hold", str(hold_ms or HOLD_MS[outcome])]
        scenario: str | Path
        refused = {"busy": 486, "unrouted": 404}
        if outcome in refused:
            scenario = self.refused(refused[outcome])
        else:
            scenario = {"answer": "caller", "failover": "caller", "ring": "caller_cancel"}[outcome]
        return sipp(
            self.workdir,
            scenario,
            free_port(),
            remote=self.edge.sip_port,
            calls=calls,
            args=tuple(args),
        )

    def refused(self, status: int) -> Path:
        text = (SCENARIOS / "caller_refused.xml").read_text()
        path = self.workdir / f"caller_refused_{status}.xml"
        path.write_text(text.replace("[status]", str(status)))
        return path

    def place_mix(self, per_outcome: int, rate: float) -> dict[str, Sipp]:
        """`per_outcome` calls of each seed outcome, the callers side by side at `rate` in all."""
        each = rate / len(ROUTE)
        return {outcome: self.caller(outcome, per_outcome, each) for outcome in ROUTE}


@contextmanager
def running_platform(workdir: Path) -> Iterator[Platform]:
    """An edge with the seed table, one accounting instance (``acct-1``), a fresh database."""
    url, database = asyncio.run(fresh_postgres())
    first_port = consecutive_free_ports(len(gateway_ports(0)))
    # Every caller is 127.0.0.1: one source far busier than a real phone, which the flood
    # limit and the sweep detection would block.
    settings = {"instance": "edge-a", "pike_limit": "100000", "scanner_sweep_targets": "100000"}
    try:
        with running_edge(workdir, **settings) as edge:
            env = dict(edge.env, CALLMESH_ACCOUNTING_DATABASE_URL=url)
            accounting = Accounting(env, workdir)
            try:
                accounting.start("acct-1")  # first: its queue must exist before any call
                edge.put(seed_records(LOOPBACK, first_port))
                yield Platform(edge, accounting, first_port, workdir)
            finally:
                accounting.stop_all()
                delete_queues(edge.namespace, CALLS_QUEUE)
    finally:
        asyncio.run(drop_postgres(database))
