"""A call's times are when its INVITE, 200 and BYE reached the edge's UDP socket,
not when the edge's loop got to them.

A scripted caller over UDP (its own clock the reference) and a SIPp gateway; the edge is
held (SIGSTOP, every worker) for 300 ms while the INVITE and while the BYE arrive: the
most a loaded loop can lag, as the datagrams wait in the kernel all the same.  Before the
kernel's receive stamps, the start and the end of the call came 300 ms late.  With two
workers, one socket's calls owned by each: one of them is handed on to its owner."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from shared.bus.base import Envelope
from shared.sip.message import Response, parse_message
from tests.services.edge.support import LOOPBACK, Edge, running_edge, sipp, wait_bound
from tests.services.edge.test_call_events_wire import CallEventQueue

pytestmark = [pytest.mark.wire, pytest.mark.integration]

HELD = 0.3
"""Seconds the edge is held while a request waits for it."""
TOLERANCE = 0.05
"""Durations within 50 ms of the caller's."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("call-times-wire")


@pytest.fixture(scope="module", params=[1, 2], ids=["one-worker", "two-workers"])
def edge(workdir: Path, request: pytest.FixtureRequest) -> Iterator[Edge]:
    directory = workdir / f"workers-{request.param}"
    directory.mkdir()
    with running_edge(directory, edge_workers=str(request.param)) as running:
        yield running


@pytest.fixture
def events(edge: Edge) -> Iterator[CallEventQueue]:
    queue = CallEventQueue(edge.namespace)
    yield queue
    queue.delete()


def edge_processes(edge: Edge) -> list[int]:
    """The edge's worker 0 and the workers it started."""
    assert edge.process is not None
    pid = edge.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *map(int, children)]


@contextmanager
def held(edge: Edge) -> Iterator[None]:
    """Every worker of the edge stopped for `HELD` seconds after the block's sends."""
    processes = edge_processes(edge)
    for pid in processes:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
        time.sleep(HELD)
    finally:
        for pid in processes:
            os.kill(pid, signal.SIGCONT)


def call_id_owned_by(worker: int, workers: int) -> str:
    """A Call-ID the edge's worker `worker` owns (`affinity.WorkerGroup.owner`)."""
    while zlib.crc32((call_id := uuid.uuid4().hex).encode()) % workers != worker:
        pass
    return call_id


class ScriptedCaller:
    """A UAC over UDP that follows the 200's Record-Route and Contact (RFC 3261 §12.1.2)."""

    def __init__(self, edge: Edge, number: str, call_id: str) -> None:
        self.edge = edge
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(5.0)
        self.port = self.sock.getsockname()[1]
        self.call_id = call_id
        self.uri = f"sip:{number}@{LOOPBACK}:{edge.sip_port}"
        self.to = f"<{self.uri}>"
        self.routes: list[str] = []
        self.remote = self.uri

    def request(self, method: str, cseq: int) -> None:
        route = f"Route: {', '.join(self.routes)}\r\n" if self.routes else ""
        message = (
            f"{method} {self.remote} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
            f"From: <sip:caller@{LOOPBACK}>;tag=c{self.call_id[:8]}\r\n"
            f"To: {self.to}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:caller@{LOOPBACK}:{self.port}>\r\n"
            f"{route}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        self.sock.sendto(message.encode(), (LOOPBACK, self.edge.sip_port))

    def final(self) -> Response:
        """The next final response (provisionals skipped)."""
        while True:
            response = parse_message(self.sock.recv(65535))
            assert isinstance(response, Response)
            if response.status >= 200:
                return response

    def answered(self, response: Response) -> None:
        """The dialog's route set and remote target, from the 200."""
        assert response.status == 200, response.status
        self.to = response.header("to") or ""
        routes = re.findall(r"<[^>]*>", ", ".join(response.headers("record-route")))
        self.routes = routes[::-1]
        contact = re.search(r"<([^>]*)>", response.header("contact") or "")
        assert contact is not None
        self.remote = contact.group(1)

    def close(self) -> None:
        self.sock.close()


def place(edge: Edge, call_id: str) -> tuple[float, float, float]:
    """One call, the edge held while its INVITE and its BYE arrive: when the caller sent
    the INVITE, got the 200 and sent the BYE (wall time)."""
    caller = ScriptedCaller(edge, "19015550001", call_id)
    try:
        with held(edge):
            invited_at = time.time()
            caller.request("INVITE", 1)
        answer = caller.final()
        answered_at = time.time()
        caller.answered(answer)
        caller.request("ACK", 1)
        time.sleep(1.0)
        with held(edge):
            hung_up_at = time.time()
            caller.request("BYE", 2)
        assert caller.final().status == 200
    finally:
        caller.close()
    return invited_at, answered_at, hung_up_at


def test_a_calls_times_are_its_requests_arrivals_on_a_held_edge(
    edge: Edge, events: CallEventQueue
) -> None:
    workers = int(edge.env["CALLMESH_EDGE_WORKERS"])
    port = free_port()
    edge.route({"times": port}, {"times": ("1901", ["times"])})
    gateway = sipp(edge.workdir, "gateway", port, calls=workers)
    wait_bound(port)
    placed = {}
    for owner in range(workers):
        call_id = call_id_owned_by(owner, workers)
        placed[call_id] = place(edge, call_id)
    assert gateway.wait() == 0, gateway.errors() + edge.log()

    def all_ended(envelopes: list[Envelope]) -> bool:
        return sum(envelope.type == "edge.call.ended" for envelope in envelopes) == workers

    times: dict[tuple[str, str], float] = {}
    for envelope in events.read_until(all_ended):
        times[envelope.data["call_id"], envelope.type.removeprefix("edge.call.")] = envelope.data[
            "at"
        ]
    for call_id, (invited_at, answered_at, hung_up_at) in placed.items():
        started, answered = times[call_id, "started"], times[call_id, "answered"]
        ending = times[call_id, "ended"]
        assert abs(started - invited_at) < TOLERANCE, call_id
        assert abs((ending - answered) - (hung_up_at - answered_at)) < TOLERANCE, call_id
        assert abs(ending - hung_up_at) < TOLERANCE, call_id
