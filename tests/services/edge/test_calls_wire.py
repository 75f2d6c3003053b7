"""Calls through a real edge with SIPp as the caller and as the carrier gateways."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    SipClient,
    Sipp,
    refusing_scenario,
    running_edge,
    sip_request,
    sipp,
    status_of,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-wire")


@pytest.fixture(scope="module")
def edge(workdir: Path) -> Iterator[Edge]:
    with running_edge(workdir) as running:
        yield running


def call(edge: Edge, workdir: Path, number: str, *, transport: str = "u1", hold: int = 0) -> int:
    caller = sipp(
        workdir,
        "caller",
        free_port(),
        remote=edge.sip_port,
        transport=transport,
        args=("-s", number, "-set", "hold", str(hold)),
    )
    return caller.wait()


def test_call_completes_through_the_first_gateway(edge: Edge, workdir: Path) -> None:
    port = free_port()
    edge.route({"c1": port}, {"c1": ("1501", ["c1"])})
    gateway = sipp(workdir, "gateway", port)
    wait_bound(port)
    assert call(edge, workdir, "15015550001") == 0, edge.log()
    assert gateway.wait() == 0
    assert gateway.received("INVITE") == 1
    assert gateway.received("ACK") == 1
    assert gateway.received("BYE") == 1
    invite = gateway.messages().split("INVITE sip:", 1)[1]
    assert invite.startswith(f"15015550001@{LOOPBACK}:{port}")
    assert f"Record-Route: <sip:{LOOPBACK}:{edge.sip_port};lr;cm-rr=" in invite  # signed


def test_failover_from_a_503_gateway(edge: Edge, workdir: Path) -> None:
    bad, good = free_port(), free_port()
    edge.route({"f1": bad, "f2": good}, {"f1": ("1502", ["f1", "f2"])})
    refusing = sipp(workdir, refusing_scenario(workdir, 503, "Service Unavailable"), bad)
    answering = sipp(workdir, "gateway", good)
    wait_bound(bad)
    wait_bound(good)
    assert call(edge, workdir, "15025550001") == 0, edge.log()
    assert refusing.wait() == 0
    assert answering.wait() == 0
    assert refusing.received("ACK") == 1


def test_failover_from_a_silent_gateway(edge: Edge, workdir: Path) -> None:
    silent, good = free_port(), free_port()
    edge.route({"s1": silent, "s2": good}, {"s1": ("1503", ["s1", "s2"])})
    mute = sipp(workdir, "gateway_silent", silent)
    answering = sipp(workdir, "gateway", good)
    wait_bound(silent)
    wait_bound(good)
    try:
        assert call(edge, workdir, "15035550001") == 0, edge.log()
        assert answering.wait() == 0
        assert mute.received("INVITE") >= 1
    finally:
        mute.stop()


def only_the_control_arrives(edge: Edge, gateway: Sipp, number: str, earlier_call: str) -> None:
    """Prove `gateway` never saw `earlier_call`: a later call to it (the control) does arrive,
    and the edge sends in order, so the earlier one would have been traced before it."""
    control = uuid.uuid4().hex
    client = SipClient(edge.sip_port)
    try:
        uri = f"sip:{number}@{LOOPBACK}:{edge.sip_port}"
        client.send(sip_request("INVITE", uri, "udp", client.port, call_id=control))
        deadline = time.monotonic() + 10
        while gateway.received("INVITE") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        traced = gateway.messages()
        assert control in traced, edge.log()
        assert earlier_call not in traced
    finally:
        client.close()


def test_6xx_stops_the_failover(edge: Edge, workdir: Path) -> None:
    declining, other = free_port(), free_port()
    edge.route(
        {"d1": declining, "d2": other},
        {"d1": ("1504", ["d1", "d2"]), "d2": ("1514", ["d2"])},
    )
    decline = sipp(workdir, refusing_scenario(workdir, 603, "Decline"), declining)
    untouched = sipp(workdir, "gateway", other)
    wait_bound(declining)
    wait_bound(other)
    client = SipClient(edge.sip_port)
    try:
        uri = f"sip:15045550001@{LOOPBACK}:{edge.sip_port}"
        declined = uuid.uuid4().hex
        client.send(sip_request("INVITE", uri, "udp", client.port, call_id=declined))
        assert status_of(client.final()) == 603
        assert decline.wait() == 0
        only_the_control_arrives(edge, untouched, "15145550001", declined)
    finally:
        client.close()
        untouched.stop()


def test_44_never_leaks_to_pstn_1(edge: Edge, workdir: Path) -> None:
    """Rule 44 → PSTN 2 only: when PSTN 2 fails the caller gets 500, PSTN 1 sees nothing."""
    pstn1, pstn2 = free_port(), free_port()
    edge.route({"p1": pstn1, "p2": pstn2}, {"p44": ("44", ["p2"]), "p1407": ("1407", ["p1"])})
    first = sipp(workdir, "gateway", pstn1)
    second = sipp(workdir, refusing_scenario(workdir, 503, "Service Unavailable"), pstn2)
    wait_bound(pstn1)
    wait_bound(pstn2)
    client = SipClient(edge.sip_port)
    try:
        to_44 = uuid.uuid4().hex
        uri = f"sip:442071234567@{LOOPBACK}"
        client.send(sip_request("INVITE", uri, "udp", client.port, call_id=to_44))
        assert status_of(client.final()) == 500
        assert second.wait() == 0
        only_the_control_arrives(edge, first, "14075550001", to_44)
    finally:
        client.close()
        first.stop()


def test_cancel_during_ringing_cancels_the_gateway_branch(edge: Edge, workdir: Path) -> None:
    port = free_port()
    edge.route({"r1": port}, {"r1": ("1505", ["r1"])})
    ringing = sipp(workdir, "gateway_ringing", port)
    wait_bound(port)
    caller = sipp(
        workdir, "caller_cancel", free_port(), remote=edge.sip_port, args=("-s", "15055550001")
    )
    assert caller.wait() == 0, edge.log()
    assert ringing.wait() == 0
    assert ringing.received("CANCEL") == 1


def test_no_route_is_404_and_max_forwards_0_is_483(edge: Edge) -> None:
    edge.route({}, {})
    client = SipClient(edge.sip_port)
    try:
        client.send(sip_request("INVITE", f"sip:99999@{LOOPBACK}", "udp", client.port))
        answer = client.final()
        assert status_of(answer) == 404
        assert b"Reason: SIP;cause=404" in answer
        uri = f"sip:15015550001@{LOOPBACK}"
        client.send(sip_request("INVITE", uri, "udp", client.port, max_forwards=0))
        assert status_of(client.final()) == 483
    finally:
        client.close()


def test_tcp_caller_to_udp_gateway_and_back(edge: Edge, workdir: Path) -> None:
    port = free_port()
    edge.route({"t1": port}, {"t1": ("1506", ["t1"])})
    gateway = sipp(workdir, "gateway", port)
    wait_bound(port)
    assert call(edge, workdir, "15065550001", transport="t1") == 0, edge.log()
    assert gateway.wait() == 0
    invite = gateway.messages().split("INVITE sip:", 1)[1]
    # Two Record-Routes: the TCP side towards the caller, the UDP side towards the gateway.
    assert f"Record-Route: <sip:{LOOPBACK}:{edge.sip_port};lr;cm-rr=" in invite
    assert f"<sip:{LOOPBACK}:{edge.sip_port};transport=tcp;lr;cm-rr=" in invite


def test_bye_passes_after_the_edge_is_killed_and_restarted(edge: Edge, workdir: Path) -> None:
    port = free_port()
    edge.route({"k1": port}, {"k1": ("1507", ["k1"])})
    gateway = sipp(workdir, "gateway", port)
    wait_bound(port)
    caller = sipp(
        workdir,
        "caller",
        free_port(),
        remote=edge.sip_port,
        args=("-s", "15075550001", "-set", "hold", "6000"),
    )
    deadline = time.monotonic() + 10
    while gateway.received("ACK") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.received("ACK") == 1, edge.log()
    edge.kill()
    edge.start()
    assert caller.wait() == 0, edge.log()
    assert gateway.wait() == 0
    assert gateway.received("BYE") == 1
