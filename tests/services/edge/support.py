"""What the edge's wire tests share: a real edge process, SIPp peers, raw SIP over sockets.

The edge runs as `python -m services.edge` beside `python -m services.routing`
against the real RabbitMQ and Redis on a fresh namespace, on free high ports,
so a test can SIGKILL and restart it exactly as production would.  The
routing table is written through the routing service's HTTP API, the path an
operator uses, so the edge's routing cache gets it the way it is designed to.
(No health service: its OPTIONS probes would be calls to the SIPp gateways.)
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deploy.labs.namespaces import delete_queues as delete_queues  # noqa: PLC0414 - re-exported
from deploy.labs.namespaces import remove_namespace as remove_namespace  # noqa: PLC0414 - re-exported
from deploy.labs.ports import free_port as free_port  # noqa: PLC0414 - re-exported for the tests
from deploy.processes import stop_process
from tests.conftest import RABBITMQ_URL, REDIS_URL

SCENARIOS = Path(__file__).with_name("scenarios")
LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[3]
READY_WITHIN = 60.0
"""Seconds a started process may take to be ready: a deadline, not a wait (2 edge workers with
TLS took over 30 s on a CI machine at load 17)."""


def options(
    port: int, transport: str = "udp", max_forwards: int = 70, host: str = LOOPBACK
) -> bytes:
    return sip_request("OPTIONS", f"sip:{host}:{port}", transport, 0, max_forwards=max_forwards)


def sip_request(
    method: str,
    uri: str,
    transport: str,
    local_port: int,
    *,
    max_forwards: int = 70,
    call_id: str | None = None,
    extra: str = "",
) -> bytes:
    call_id = call_id or uuid.uuid4().hex
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport.upper()} {LOOPBACK}:{local_port}"
        f";branch=z9hG4bK{call_id};rport\r\n"
        f"From: <sip:test@{LOOPBACK}>;tag=t{call_id[:8]}\r\n"
        f"To: <{uri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class SipClient:
    """A raw SIP peer over UDP or TCP, for requests whose exact answer a test checks."""

    def __init__(self, edge_port: int, transport: str = "udp") -> None:
        self.transport = transport
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.settimeout(5.0)
        if transport == "udp":
            self.sock.bind((LOOPBACK, 0))
            self.sock.connect((LOOPBACK, edge_port))
        else:
            self.sock.connect((LOOPBACK, edge_port))
        self.port = int(self.sock.getsockname()[1])
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data) if self.transport == "tcp" else self.sock.send(data)

    def receive(self) -> bytes:
        """The next message (for TCP: framed by Content-Length)."""
        if self.transport == "udp":
            return self.sock.recv(65535)
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = self._buffer[:end].lower()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.startswith((b"content-length:", b"l:")):
                        length = int(line.split(b":", 1)[1])
                total = end + 4 + length
                if len(self._buffer) >= total:
                    message, self._buffer = self._buffer[:total], self._buffer[total:]
                    return message
            chunk = self.sock.recv(65535)
            if not chunk:
                raise ConnectionError("edge closed the connection")
            self._buffer += chunk

    def final(self) -> bytes:
        """The first final response (provisionals skipped)."""
        while True:
            message = self.receive()
            if not message.startswith(b"SIP/2.0 1"):
                return message

    def close(self) -> None:
        self.sock.close()


def status_of(message: bytes) -> int:
    return int(message.split(b" ", 2)[1])


@dataclass
class Edge:
    """A running `python -m services.edge` (restartable) and its routing service."""

    namespace: str
    sip_port: int
    http_port: int
    routing_port: int
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    routing: subprocess.Popen[bytes] | None = None
    starts: int = 0
    sip_host: str = LOOPBACK
    """The address its SIP sockets listen on (a NAT test's public link, else loopback)."""

    def start_routing(self) -> None:
        log = open(self.workdir / "routing.log", "wb")  # noqa: SIM115
        env = dict(self.env, CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{self.routing_port}")
        self.routing = subprocess.Popen(
            [sys.executable, "-m", "services.routing"], cwd=REPO, env=env, stdout=log, stderr=log
        )

    def wait_routing_ready(self, timeout: float = READY_WITHIN) -> None:
        """Until the routing service started beside the edge answers /readyz (a CI run on a
        busy machine PUT a gateway to it before it listened)."""
        self._wait_http(self.routing_port, time.monotonic() + timeout)

    def start(self) -> None:
        self.starts += 1
        log = open(self.workdir / f"edge-{self.starts}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.edge"],
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = READY_WITHIN) -> None:
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((self.sip_host, 0))
            probe.settimeout(0.2)
            while time.monotonic() < deadline:
                assert self.process is not None and self.process.poll() is None, self.log()
                question = options(self.sip_port, host=self.sip_host)
                probe.sendto(question, (self.sip_host, self.sip_port))
                try:
                    if probe.recv(65535).startswith(b"SIP/2.0 200"):
                        break
                except OSError:
                    continue
            else:
                raise AssertionError(f"edge did not answer OPTIONS: {self.log()}")
        self._wait_http(self.http_port, deadline)  # and the HTTP API is up

    def _wait_http(self, port: int, deadline: float) -> None:
        """Until the process serving HTTP on `port` answers /readyz with 200."""
        while time.monotonic() < deadline:
            try:
                if self.http(port).get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"HTTP API on port {port} not ready: {self.log()}")

    def http(self, port: int | None = None) -> httpx.Client:
        port = port or self.http_port
        return httpx.Client(base_url=f"http://{LOOPBACK}:{port}", timeout=10.0)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        for process in (self.process, self.routing):
            if process is not None:
                stop_process(process)

    def log(self) -> str:
        logs = sorted(self.workdir.glob("edge-*.log"))
        return "".join(p.read_text(errors="replace")[-3000:] for p in logs)

    def route(self, gateways: dict[str, int], rules: dict[str, tuple[str, list[str]]]) -> None:
        """Gateways by id → UDP port on loopback; rules by id → (prefix, gateway ids).

        Returns once the edge's routing cache has the table version they made.
        """
        records: dict[str, dict[str, object]] = {
            f"gateways/{gateway_id}": {
                "address": f"sip:{LOOPBACK}:{port}",
                "description": f"gw {gateway_id}",
            }
            for gateway_id, port in gateways.items()
        }
        for rule_id, (prefix, targets) in rules.items():
            records[f"rules/{rule_id}"] = {
                "group": "0",
                "prefix": prefix,
                "priority": 0,
                "gateways": targets,
            }
        self.put(records)

    def put(self, records: dict[str, dict[str, object]]) -> int:
        """PUT each body at ``/v1/<path>`` of the routing service, in order; returns the table
        version they made once the edge's routing cache has it."""
        version = 0
        with self.http(self.routing_port) as client:
            for path, body in records.items():
                reply = client.put(f"/v1/{path}", json=body)
                reply.raise_for_status()
                version = max(version, reply.json()["version"])
        self.wait_routed(version)
        return version

    def wait_routed(self, version: int) -> None:
        """Until the edge's routing cache reports `version` on its /metrics."""
        deadline = time.monotonic() + 10
        with self.http() as client:
            while time.monotonic() < deadline:
                text = client.get("/metrics").text
                for line in text.splitlines():
                    name, _, value = line.partition(" ")
                    if name == "callmesh_edge_routing_version" and float(value) >= version:
                        return
                time.sleep(0.05)
        raise AssertionError(f"edge did not reach routing table version {version}")


@contextmanager
def running_edge(workdir: Path, tls_port: int | None = None, /, **settings: str) -> Iterator[Edge]:
    """An edge on UDP and TCP (and TLS on `tls_port`, given its certificate in `settings`)."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    sip_port, http_port, routing_port = free_port(), free_port(), free_port()
    env = dict(os.environ)
    env.update(
        CALLMESH_NAMESPACE=namespace,
        CALLMESH_RABBITMQ_URL=RABBITMQ_URL,
        CALLMESH_REDIS_URL=REDIS_URL,
        CALLMESH_SIP_LISTEN=f"udp:{LOOPBACK}:{sip_port},tcp:{LOOPBACK}:{sip_port}"
        + (f",tls:{LOOPBACK}:{tls_port}" if tls_port else ""),
        CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{http_port}",
        CALLMESH_FR_TIMEOUT="1.0",
        CALLMESH_FR_INV_TIMEOUT="3.0",
        CALLMESH_LOG_LEVEL="INFO",
        # These tests check calls, not load shedding (tests/services/edge/policy/test_overload.py
        # does): a loop made late by a busy test machine must not refuse their INVITEs with 503.
        CALLMESH_OVERLOAD_LAG_MS="0",
        # The edge's call events journaled beside the test's other files, not in the tree's var/.
        CALLMESH_EDGE_OUTBOX_DIR=str(workdir / "edge-outbox"),
    )
    env.update({f"CALLMESH_{name.upper()}": value for name, value in settings.items()})
    edge = Edge(namespace, sip_port, http_port, routing_port, workdir, env)
    try:
        edge.start_routing()
        edge.start()
        edge.wait_routing_ready()
        yield edge
    finally:
        stop_all_sipp()
        edge.stop()
        remove_namespace(namespace)


@dataclass
class Sipp:
    """One SIPp process; `messages()` is its message trace (what it sent and received)."""

    process: subprocess.Popen[bytes]
    trace: Path
    log: Path

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"SIPp did not finish in {timeout} s: {self.errors()}") from None

    def stop(self) -> None:
        stop_process(self.process, grace=5)

    def messages(self) -> str:
        return self.trace.read_text(errors="replace") if self.trace.exists() else ""

    def received(self, method: str) -> int:
        """How many `method` requests it received."""
        return re.findall(r"message received \[\d+\] bytes :\s*(\S+)", self.messages()).count(
            method
        )

    def errors(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def refusing_scenario(workdir: Path, status: int, reason: str) -> Path:
    """gateway_reject.xml for one status: SIPp wants a literal status code in a scenario."""
    text = (SCENARIOS / "gateway_reject.xml").read_text()
    path = workdir / f"gateway_{status}.xml"
    path.write_text(text.replace("[status] [reason]", f"{status} {reason}"))
    return path


def sipp(
    workdir: Path,
    scenario: str | Path,
    port: int,
    *,
    remote: int | None = None,
    transport: str = "u1",
    calls: int = 1,
    args: tuple[str, ...] = (),
    host: str = LOOPBACK,
    remote_host: str = LOOPBACK,
    netns: str | None = None,
) -> Sipp:
    """SIPp on `host`:`port` (inside network namespace `netns`, if given), toward
    `remote_host`:`remote`."""
    path = scenario if isinstance(scenario, Path) else SCENARIOS / f"{scenario}.xml"
    name = f"{path.stem}-{port}"
    trace = workdir / f"{name}.msg"
    log = workdir / f"{name}.err"
    argv = [
        *(("ip", "netns", "exec", netns) if netns else ()),
        "sipp", "-sf", str(path), "-i", host, "-p", str(port),
        "-t", transport, "-m", str(calls), "-nostdin",
        "-trace_msg", "-message_file", str(trace), "-trace_err", "-error_file", str(log),
        "-timeout_error", "-recv_timeout", "20000", "-aa", *args,
    ]  # fmt: skip # SIPp's options in rows, each flag beside its value
    if remote is not None:
        argv.append(f"{remote_host}:{remote}")
    process = subprocess.Popen(
        argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    started = Sipp(process, trace, log)
    STARTED.append(started)
    return started


STARTED: list[Sipp] = []
"""Every SIPp a test started, so the module's teardown stops the ones still running."""


def stop_all_sipp() -> None:
    while STARTED:
        STARTED.pop().stop()


def wait_bound(port: int, timeout: float = 10.0) -> None:
    """SIPp binds before it reads, so a bound UDP port means the gateway is listening.

    Read from the kernel's table, not probed by binding the port: a probe holding it for an
    instant as SIPp starts makes SIPp's own bind fail, and SIPp exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if udp_bound(port):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing bound UDP port {port}")


def udp_bound(port: int) -> bool:
    """Whether a UDP socket of this network namespace is bound to local `port`."""
    suffix = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as rows:
            next(rows)  # the column names
            if any(row.split()[1].endswith(suffix) for row in rows):
                return True
    return False
