"""The drill's steady load: SIPp calls, SIPp registrations, a route change every second.

Each kind records what it was told, with wall-clock times (SIPp's
``[timestamp]``, ``time.time()`` here: one clock in every network namespace),
so a step can say afterwards what failed, when it worked again, and what was
acknowledged and must therefore still be there.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.registrar import Phone
from bench.registrar_sipp import write_injection
from deploy.drill.platform import DOMAIN, Platform
from deploy.labs.ports import LOOPBACK, free_port

HERE = Path(__file__).resolve().parent
CALLER = HERE / "scenarios" / "caller.xml"
GATEWAY = HERE / "scenarios" / "gateway.xml"
REGISTER = HERE.parents[1] / "bench" / "scenarios" / "register.xml"
NUMBER = "15550100"
"""What the calls dial: the seeded rule sends every number starting with 1 to the gateway."""
PASSWORD = "drill-pw"
BUFFER = str(4 * 1024 * 1024)
"""SIPp's socket buffers: its 64 KiB default drops bursts at hundreds of calls a second."""


@dataclass(frozen=True)
class Entry:
    """Where calls are placed from and to: loopback to an edge, or a namespace to the VIP."""

    host: str
    port: int
    local: str = LOOPBACK
    netns: str = ""

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv


@dataclass
class Outcome:
    """What one kind of traffic saw in a step: item → time placed, and time it succeeded."""

    placed: dict[str, float] = field(default_factory=dict)
    succeeded: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    """Calls only: the 200 to their BYE."""

    @property
    def failed(self) -> list[str]:
        return [item for item in self.placed if item not in self.succeeded]

    def recovered_after(self, kill_at: float) -> float | None:
        """Seconds from `kill_at` until the first success of an item placed after it (and
        after the last item placed after it that failed): how long the kill held new work up,
        retransmissions included; None when nothing placed then succeeded."""
        failures = [self.placed[item] for item in self.failed]
        since = max((at for at in failures if at >= kill_at), default=kill_at)
        done = [at for item, at in self.succeeded.items() if self.placed.get(item, 0) >= since]
        return max(0.0, min(done) - kill_at) if done else None


def sipp(argv: list[str], log: Path, entry: Entry) -> subprocess.Popen[bytes]:
    """SIPp with its <log> actions to `log`; the screen discarded."""
    full = ["sipp", *argv, "-nostdin", "-trace_logs", "-log_file", str(log)]
    full += ["-buff_size", BUFFER, "-trace_err", "-error_file", str(log.with_suffix(".err"))]
    return subprocess.Popen(
        entry.wrap(full), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=log.parent
    )


def start_gateway(platform: Platform) -> tuple[subprocess.Popen[bytes], int]:
    """The SIPp gateway every edge routes the calls to; its process and port."""
    host = platform.gateway_host
    port = free_port(host)
    argv = ["-sf", str(GATEWAY), "-i", platform.gateway_host, "-p", str(port), "-t", "u1"]
    log = platform.folder / "gateway.log"
    argv += ["-max_recv_loops", "10000", "-default_behaviors", "all,-abortunexp"]
    process = sipp(argv, log, Entry(platform.gateway_host, 0))
    time.sleep(1.0)  # SIPp binds before reading its scenario's first message: soon enough
    assert process.poll() is None, (platform.folder / "gateway.err").read_text(errors="replace")
    return process, port


def place_calls(
    log: Path, entry: Entry, rate: float, calls: int, hold_ms: int
) -> subprocess.Popen[bytes]:
    """`calls` calls at `rate` a second, each held `hold_ms`; SIPp exits when all are done."""
    limit = int(rate * (hold_ms / 1000 + 25)) + 10  # never throttled by SIPp's open-call cap
    argv = ["-sf", str(CALLER), "-s", NUMBER, "-i", entry.local, "-p", str(free_port())]
    argv += ["-t", "u1", "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000", "-l", str(limit)]
    argv += ["-d", str(hold_ms), "-timeout", f"{calls / rate + hold_ms / 1000 + 60:.0f}"]
    return sipp([*argv, f"{entry.host}:{entry.port}"], log, entry)


def register_phones(
    log: Path, edge_port: int, phones: Sequence[Phone], rate: float, count: int
) -> subprocess.Popen[bytes]:
    """`count` registrations at `rate` a second, the phones in turn (each a refresh)."""
    injection = log.with_suffix(".csv")
    write_injection(phones, injection)
    argv = ["-sf", str(REGISTER), "-inf", str(injection), "-key", "domain", DOMAIN]
    argv += ["-auth_uri", DOMAIN, "-i", LOOPBACK, "-p", str(free_port()), "-t", "u1"]
    argv += ["-m", str(count), "-r", f"{rate:g}", "-rp", "1000", "-l", str(int(rate * 15) + 10)]
    argv += ["-timeout", f"{count / rate + 60:.0f}", "-recv_timeout", "10000"]
    return sipp([*argv, f"{LOOPBACK}:{edge_port}"], log, Entry(LOOPBACK, edge_port))


def user_of(registration: str) -> str:
    """The user of a registration as the register scenario logs it: ``user:call-id``."""
    return registration.partition(":")[0]


def phones(count: int) -> list[Phone]:
    return [Phone(f"drill{n}", DOMAIN, PASSWORD) for n in range(count)]


def read_log(log: Path) -> dict[str, dict[str, float]]:
    """A SIPp log of the scenarios' actions: event ("placed", "up", ...) → item → time."""
    found: dict[str, dict[str, float]] = {}
    if not log.exists():
        return found
    for line in log.read_text(errors="replace").splitlines():
        words = line.split()
        with suppress(IndexError, ValueError):  # not a line of the scenario's actions
            found.setdefault(words[0], {})[words[1]] = float(words[-1])
    return found


def outcome(log: Path, success: str) -> Outcome:
    events = read_log(log)
    return Outcome(events.get("placed", {}), events.get(success, {}), events.get("ended", {}))


class RouteChanges(threading.Thread):
    """A gateway written through the routing API every `interval` seconds until stopped;
    the ones answered 200 are acknowledged, and must be there afterwards."""

    def __init__(self, platform: Platform, prefix: str, interval: float = 1.0) -> None:
        super().__init__(name=f"route-changes-{prefix}", daemon=True)
        self.platform, self.prefix, self.interval = platform, prefix, interval
        self.seen = Outcome()
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            gateway_id = f"{self.prefix}-{n}"
            self.seen.placed[gateway_id] = time.time()
            body = {"address": f"sip:198.51.100.{n % 250 + 1}:5060"}
            try:
                with self.platform.api("routing") as client:
                    reply = client.put(f"/v1/gateways/{gateway_id}", json=body)
                if reply.status_code == 200:
                    self.seen.succeeded[gateway_id] = time.time()
            except httpx.HTTPError:
                pass  # refused or cut: not acknowledged
            n += 1
            self.stopping.wait(self.interval)

    def stop(self) -> Outcome:
        self.stopping.set()
        self.join(30)
        return self.seen
