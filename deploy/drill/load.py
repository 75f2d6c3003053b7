"""The drill's steady load: SIPp calls, SIPp registrations, a route change every second.

Each kind records what it was told, with wall-clock times (SIPp's
``[timestamp]``, ``time.time()`` here: one clock in every network namespace),
so a step can say afterwards what failed, when it worked again, and what was
acknowledged and must therefore still be there.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.registrar import Phone
from bench.registrar_sipp import write_injection
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


def start_gateway(folder: Path, host: str) -> tuple[subprocess.Popen[bytes], int]:
    """The SIPp gateway the edges route the calls to, on `host`; its process and port.
    Its error file (``gateway.err``) lists every message it did not expect (see
    `unexpected_at_gateway`)."""
    port = free_port(host)
    argv = ["-sf", str(GATEWAY), "-i", host, "-p", str(port), "-t", "u1"]
    log = folder / "gateway.log"
    argv += ["-max_recv_loops", "10000", "-default_behaviors", "all,-abortunexp"]
    process = sipp(argv, log, Entry(host, 0))
    time.sleep(1.0)  # SIPp binds before reading its scenario's first message: soon enough
    assert process.poll() is None, (folder / "gateway.err").read_text(errors="replace")
    return process, port


WARNING = re.compile(r"\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d\.\d+\t\d+\.\d+: ")
"""How each warning of a SIPp error file starts (date, time, epoch): one may follow another's
quoted message on the same line."""
UNEXPECTED = (
    ("Continuing call on unexpected message", "received '", ""),
    ("Continuing call on an unexpected BYE", "", ""),
    ("Dead call", "received '", " after its call ended"),
)
"""SIPp's warnings (under -trace_err) for a message it did not expect: where the message
starts in the warning, and what the kind is called beside the method (or status)."""


def unexpected_at_gateway(errors: Path, since: int) -> Counter[str]:
    """What the gateway did not expect from byte `since` of its error file on, by kind: a
    request its call's scenario was not at (an INVITE resent with a new branch after the 200,
    a BYE before the ACK or for a call it never knew), or one for a call it had ended (a BYE
    resent after its 200: SIPp does not answer it again, as a real UAS's transaction layer
    would, so an edge that lost that 200 never gets one).
    The gateway runs with ``-abortunexp`` off, so each was ignored, not fatal: counted here,
    never hidden."""
    if not errors.exists():
        return Counter()
    with errors.open("rb") as file:
        file.seek(since)
        text = file.read().decode(errors="replace")
    found: Counter[str] = Counter()
    for warning in WARNING.split(text):
        for opening, before, suffix in UNEXPECTED:
            if warning.startswith(opening):
                words = warning.partition(before)[2].split(None, 2) if before else ["BYE"]
                what = words[1] if words[:1] == ["SIP/2.0"] and len(words) > 1 else words[0]
                found[what.strip("'") + suffix] += 1
                break
    return found


def place_calls(
    log: Path, entry: Entry, rate: float, calls: int, hold_ms: int
) -> subprocess.Popen[bytes]:
    """`calls` calls at `rate` a second, each held `hold_ms`; SIPp exits when all are done.

    Every wait of a call is bounded (``-recv_timeout``): a call answered 100 Trying by an
    edge that died before its INVITE left gets no retransmission of it, and the scenario's
    optional 100/180 waits have no timeout of their own: it would wait for ever, and SIPp,
    at its -timeout, waits for its calls to end.  It fails after 10 s instead.
    """
    limit = int(rate * (hold_ms / 1000 + 25)) + 10  # never throttled by SIPp's open-call cap
    argv = ["-sf", str(CALLER), "-s", NUMBER, "-i", entry.local, "-p", str(free_port())]
    argv += ["-t", "u1", "-m", str(calls), "-r", f"{rate:g}", "-rp", "1000", "-l", str(limit)]
    argv += ["-d", str(hold_ms), "-timeout", f"{calling_within(rate, calls, hold_ms):.0f}"]
    argv += ["-recv_timeout", "10000"]
    return sipp([*argv, f"{entry.host}:{entry.port}"], log, entry)


def calling_within(rate: float, calls: int, hold_ms: int) -> float:
    """The calls' SIPp's -timeout: its last call placed and held, then a minute to spare."""
    return calls / rate + hold_ms / 1000 + 60


def registering_within(rate: float, count: int) -> float:
    """The registrations' SIPp's -timeout: the last one sent, then a minute to spare."""
    return count / rate + 60


def register_phones(
    log: Path, edge: Entry, phones: Sequence[Phone], rate: float, count: int
) -> subprocess.Popen[bytes]:
    """`count` registrations at `rate` a second, the phones in turn (each a refresh), from
    `edge.local` to the edge at `edge.host`:`edge.port`; the phones share one domain."""
    injection = log.with_suffix(".csv")
    write_injection(phones, injection)
    domain = phones[0].domain
    argv = ["-sf", str(REGISTER), "-inf", str(injection), "-key", "domain", domain]
    argv += ["-auth_uri", domain, "-i", edge.local, "-p", str(free_port(edge.local)), "-t", "u1"]
    argv += ["-m", str(count), "-r", f"{rate:g}", "-rp", "1000", "-l", str(int(rate * 15) + 10)]
    argv += ["-timeout", f"{registering_within(rate, count):.0f}", "-recv_timeout", "10000"]
    return sipp([*argv, f"{edge.host}:{edge.port}"], log, edge)


def user_of(registration: str) -> str:
    """The user of a registration as the register scenario logs it: ``user:call-id``."""
    return registration.partition(":")[0]


def phones(count: int, domain: str) -> list[Phone]:
    return [Phone(f"drill{n}", domain, PASSWORD) for n in range(count)]


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
    """A gateway written through a routing API (`api` opens a client of it) every `interval`
    seconds until stopped; the ones answered 200 are acknowledged, and must be there
    afterwards."""

    def __init__(self, api: Callable[[], httpx.Client], prefix: str, interval: float = 1.0) -> None:
        super().__init__(name=f"route-changes-{prefix}", daemon=True)
        self.api, self.prefix, self.interval = api, prefix, interval
        self.seen = Outcome()
        self.stopping = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            gateway_id = f"{self.prefix}-{n}"
            self.seen.placed[gateway_id] = time.time()
            # TEST-NET-3: the health service probes these, and the VIP lab's boxes and VIP
            # are in TEST-NET-2 (deploy/vip/lab.py)
            body = {"address": f"sip:203.0.113.{n % 250 + 1}:5060"}
            try:
                with self.api() as client:
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
