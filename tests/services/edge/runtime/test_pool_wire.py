"""Two edge worker processes on one port: every call's messages reach the worker holding it,
handed on by the workers or steered by the kernel."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.health_support import metric, metrics
from tests.services.edge.support import (
    Edge,
    Sipp,
    running_edge,
    sipp,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLS = 40


HANDED_ON = "callmesh_edge_handed_on_total"


@pytest.fixture(scope="module", params=["false", "true"], ids=["hand-on", "kernel-steering"])
def edge(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Edge]:
    """Each test twice: the workers hand messages on, and the kernel steers them
    (`runtime.steering`), which leaves one sender's calls nothing to hand on."""
    with running_edge(
        tmp_path_factory.mktemp("edge-workers"),
        edge_workers="2",
        edge_kernel_steering=request.param,
    ) as running:
        yield running


def steered(edge: Edge) -> bool:
    return edge.env["CALLMESH_EDGE_KERNEL_STEERING"] == "true"


def assert_handed_on(edge: Edge, before: float) -> None:
    """One sender's calls were handed on between the workers, unless the kernel steered them."""
    handed_on = metric(edge, HANDED_ON) - before
    if steered(edge):
        assert handed_on == 0
        assert "no kernel steering" not in edge.log()
    else:
        assert handed_on > 0  # half the Call-IDs are the other worker's


def calls_from_source_ports(
    edge: Edge, tmp_path: Path, gateway_id: str, prefix: str, callers: int
) -> Sipp:
    """``CALLS`` calls to a new gateway from ``callers`` source ports (so the kernel spreads
    them over the workers); returns the gateway, which has seen them all through."""
    port = free_port()
    edge.route({gateway_id: port}, {gateway_id: (prefix, [gateway_id])})
    gateway = sipp(tmp_path, "gateway", port, calls=CALLS)
    wait_bound(port)
    running = [
        sipp(
            tmp_path,
            "caller",
            free_port(),
            remote=edge.sip_port,
            calls=CALLS // callers,
            args=("-s", f"{prefix}5550001", "-set", "hold", "100", "-r", "10"),
        )
        for _ in range(callers)
    ]
    assert [caller.wait(60) for caller in running] == [0] * callers, edge.log()
    assert gateway.wait(30) == 0
    return gateway


def test_calls_from_many_source_ports_complete_across_workers(edge: Edge, tmp_path: Path) -> None:
    gateway = calls_from_source_ports(edge, tmp_path, "w1", "1601", callers=4)
    assert gateway.received("BYE") == CALLS


def test_cancel_reaches_the_worker_holding_the_invite(edge: Edge, tmp_path: Path) -> None:
    port = free_port()
    edge.route({"w2": port}, {"w2": ("1602", ["w2"])})
    for _ in range(4):  # a few source ports (and calls: the hand-on owner is by Call-ID)
        ringing = sipp(tmp_path, "gateway_ringing", port)
        wait_bound(port)
        caller = sipp(
            tmp_path, "caller_cancel", free_port(), remote=edge.sip_port, args=("-s", "16025550001")
        )
        assert caller.wait() == 0, edge.log()
        assert ringing.wait() == 0
        assert ringing.received("CANCEL") == 1


def test_metrics_count_every_workers_calls(edge: Edge, tmp_path: Path) -> None:
    """``/metrics`` is served by the main process and folds in the other worker's counters."""
    invites_before = metric(edge, "callmesh_edge_requests_total", method="INVITE")
    # Eight source ports: all on one worker (which the count alone would not tell) is 1 in 128.
    calls_from_source_ports(edge, tmp_path, "w3", "1603", callers=8)

    assert metric(edge, "callmesh_edge_gateway_attempts_total", gateway="w3") == CALLS
    assert metric(edge, "callmesh_edge_requests_total", method="INVITE") - invites_before == CALLS
    versions = [key for key in metrics(edge) if key[0] == "callmesh_edge_routing_version"]
    assert len(versions) == 1  # one merged sample, not one per worker


def run_dir(tmp_path: Path, name: str) -> Path:
    """A directory of its own for one SIPp run (its trace is named after its port)."""
    path = tmp_path / name
    path.mkdir()
    return path


def worker_ports(gateway: Sipp, method: str = "INVITE") -> set[str]:
    """The edge's Via port on each `method` the gateway received: which worker sent it."""
    pattern = rf"{method} sip:\S+ SIP/2.0\r?\n(?:[^\r\n]+\r?\n)*?Via: SIP/2.0/UDP [^:]+:(\d+)"
    return set(re.findall(pattern, gateway.messages()))


def one_port_calls(
    edge: Edge, workdir: Path, gateway_port: int, caller_port: int, *, number: str, calls: int
) -> Sipp:
    """``calls`` calls to ``number`` from one caller socket, 20 a second; all must complete."""
    gateway = sipp(workdir, "gateway", gateway_port, calls=calls)
    wait_bound(gateway_port)
    caller = sipp(
        workdir,
        "caller",
        caller_port,
        remote=edge.sip_port,
        calls=calls,
        args=("-s", number, "-set", "hold", "100", "-r", "20"),
    )
    assert caller.wait(60) == 0, edge.log()
    assert gateway.wait(30) == 0
    assert gateway.received("BYE") == calls
    return gateway


def test_calls_from_one_source_port_spread_over_the_workers(edge: Edge, tmp_path: Path) -> None:
    """A trunk sends every call from one address and port; each call stays on one worker."""
    port = free_port()
    edge.route({"w4": port}, {"w4": ("1604", ["w4"])})
    before = metric(edge, HANDED_ON)
    gateway = one_port_calls(edge, tmp_path, port, free_port(), number="16045550001", calls=CALLS)
    assert_handed_on(edge, before)
    # The gateway answers each BYE to where the call's INVITE came from (SIPp does): the
    # calls completed, so every BYE left by its INVITE's worker.
    assert len(worker_ports(gateway)) == 2  # one worker for all 40 calls: 1 in 2**39
    assert worker_ports(gateway, "BYE") == worker_ports(gateway)


def test_the_trace_api_finds_each_call_whichever_worker_held_it(edge: Edge, tmp_path: Path) -> None:
    """The API's process asks the other worker for its trace ring (`runtime.trace_socket`)."""
    port = free_port()
    edge.route({"w7": port}, {"w7": ("1607", ["w7"])})
    gateway = one_port_calls(edge, tmp_path, port, free_port(), number="16075550001", calls=CALLS)
    assert len(worker_ports(gateway)) == 2  # positive control: both workers held calls
    call_ids = set(re.findall(r"\nCall-ID: (\S+)", gateway.messages()))
    assert len(call_ids) == CALLS
    senders: set[str] = set()
    with edge.http() as client:
        for call_id in call_ids:
            reply = client.get(f"/v1/calls/{call_id}/trace")
            assert reply.status_code == 200, reply.text
            messages = reply.json()["messages"]
            assert messages[0]["direction"] == "in"
            assert messages[0]["message"].startswith("INVITE sip:16075550001@")
            forwarded = [
                m
                for m in messages
                if m["direction"] == "out" and "INVITE sip:" in m["message"][:12]
            ]
            senders.update(m["source"] for m in forwarded)
    assert len(senders) == 2  # each worker's private port: both rings were read


def test_cancels_from_one_source_port_reach_the_worker_holding_each_invite(
    edge: Edge, tmp_path: Path
) -> None:
    port, caller_port = free_port(), free_port()
    edge.route({"w5": port}, {"w5": ("1605", ["w5"])})
    workers = set()
    for attempt in range(8):
        ringing = sipp(run_dir(tmp_path, f"g{attempt}"), "gateway_ringing", port)
        wait_bound(port)
        caller = sipp(
            run_dir(tmp_path, f"c{attempt}"),
            "caller_cancel",
            caller_port,
            remote=edge.sip_port,
            args=("-s", "16055550001"),
        )
        assert caller.wait() == 0, edge.log()
        assert ringing.wait() == 0
        assert ringing.received("CANCEL") == 1
        workers |= worker_ports(ringing)
    assert len(workers) == 2  # both workers held INVITEs (all on one: 1 in 128)


def worker_pids(edge: Edge) -> set[int]:
    """The edge's extra worker processes (children running ``runtime.worker_main``)."""
    assert edge.process is not None
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == edge.process.pid and b"services.edge.runtime.worker_main" in cmdline:
            found.add(int(stat.parent.name))
    return found


def ready_lines(edge: Edge) -> int:
    """How many workers have logged that they serve SIP (they log to the edge's files)."""
    logs = edge.workdir.glob("edge-*.log")
    return sum(path.read_text(errors="replace").count("edge worker ready") for path in logs)


def test_calls_go_on_while_a_worker_restarts(edge: Edge, tmp_path: Path) -> None:
    """Runs last in this module: it kills the extra worker (the pool restarts it)."""
    port, caller_port = free_port(), free_port()
    edge.route({"w6": port}, {"w6": ("1606", ["w6"])})
    (worker,) = worker_pids(edge)
    ready_before = ready_lines(edge)
    assert ready_before >= 1, "the workers' ready lines are not where this test looks"
    os.kill(worker, signal.SIGKILL)
    # The killed worker's calls are handled by the other one meanwhile.
    one_port_calls(
        edge, run_dir(tmp_path, "killed"), port, caller_port, number="16065550001", calls=10
    )

    deadline = time.monotonic() + 20
    while worker_pids(edge) in (set(), {worker}) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert worker_pids(edge) - {worker}, "the pool did not restart the worker"
    while ready_lines(edge) == ready_before and time.monotonic() < deadline + 30:
        time.sleep(0.1)  # its start-up: routing table, sockets
    assert ready_lines(edge) > ready_before, "the restarted worker never said it was ready"
    before = metric(edge, HANDED_ON)
    gateway = one_port_calls(
        edge, run_dir(tmp_path, "restarted"), port, caller_port, number="16065550001", calls=CALLS
    )
    assert len(worker_ports(gateway)) == 2  # the restarted worker takes its calls again
    assert_handed_on(edge, before)  # steered: its new socket is in the map
