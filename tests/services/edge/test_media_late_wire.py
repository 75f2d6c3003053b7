"""Late offers, PRACK, UPDATE and 2xx retransmissions relayed through a real rtpengine by a real
edge, SIPp on both ends (the gateways set ``media_relay: always`` through the routing API).

A late offer: the caller's INVITE has no SDP, the gateway's 200 (or reliable 183) carries the
offer, the caller's ACK (or PRACK) the answer.  Each side must receive SDP naming rtpengine's
ports, RTP must cross rtpengine both ways (its ``query`` counts each party's packets), and no
session may be left, whatever became of the call.

Sizes: ``CALLMESH_TEST_MEDIA_CALLS`` calls in all for the no-leak test (default 30, a third of
each outcome, as for the early offers of ``test_media_wire.py``; the issue's figure is 1000),
each caller placing ``CALLMESH_TEST_MEDIA_RATE`` calls/s (default 10).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from deploy.rtpengine import Daemon
from tests.services.edge.support import (
    SCENARIOS,
    Edge,
    sipp,
    wait_bound,
)
from tests.services.edge.test_media_wire import (
    PER_OUTCOME,
    calls_leave_no_session,
    daemon,
    echo_call,
    edge,
    media_ports,
    metric,
    no_sipp_left,
    relayed_gateway,
    sessions,
    until,
)

__all__ = ["daemon", "edge", "no_sipp_left"]  # the media wire test's fixtures, shared

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media-late-wire")


def parts(trace: str, way: str) -> list[str]:
    """The parts of the first multipart INVITE body a SIPp trace shows `way` (sent, received)."""
    header = (
        r"message sent \(\d+ bytes\):" if way == "sent" else r"message received \[\d+\] bytes :"
    )
    found = re.search(header + r"\s*\n(INVITE .*?)(?=\n-{20,}|\Z)", trace, re.DOTALL)
    assert found is not None, trace
    body = found.group(1).split("--cm-boundary-1--")[0]
    return body.split("--cm-boundary-1")[1:]


def test_a_late_offer_is_relayed_from_the_200_to_the_ack_and_rtp_crosses_both_ways(
    edge: Edge, daemon: Daemon, workdir: Path
) -> None:
    before = metric(edge, "callmesh_edge_media_relayed_calls_total")
    call = echo_call(edge, daemon, workdir, ("media_gateway", "late_caller"), "17660001")
    assert media_ports(call.gateway, "INVITE") == []  # the INVITE went as it came, without SDP
    [offer] = set(media_ports(call.caller, "SIP/2.0 200"))
    assert offer in call.rtpengine_ports and offer != call.gateway_media
    assert media_ports(call.caller, "ACK", sent=True) == [call.caller_media]
    [answer] = media_ports(call.gateway, "ACK")
    assert answer in call.rtpengine_ports and answer not in (call.caller_media, offer)
    assert "cm-media=late" in call.gateway.messages()
    assert metric(edge, "callmesh_edge_media_relayed_calls_total") == before + 1


def test_a_reliable_183s_offer_the_pracks_answer_and_an_update_are_relayed(
    edge: Edge, daemon: Daemon, workdir: Path
) -> None:
    scenarios = ("late_prack_gateway", "late_prack_caller")
    call = echo_call(edge, daemon, workdir, scenarios, "17670001")
    toward_caller = media_ports(call.caller, "SIP/2.0 183") + media_ports(
        call.caller, "SIP/2.0 200"
    )
    toward_gateway = media_ports(call.gateway, "PRACK") + media_ports(call.gateway, "UPDATE")
    assert len(toward_caller) == 2 and len(toward_gateway) == 2, (toward_caller, toward_gateway)
    for port in (*toward_caller, *toward_gateway):
        assert port in call.rtpengine_ports and port not in (call.caller_media, call.gateway_media)


def test_a_2xx_retransmitted_to_a_restarted_edge_carries_rtpengines_sdp_again(
    edge: Edge, daemon: Daemon, workdir: Path
) -> None:
    """The caller holds its ACK back, so the gateway retransmits its 200; the edge that relayed
    the first is killed and a new process (no transaction, no memory) takes the others: each
    names the same rtpengine port, asked again from the mark in the 200's Record-Route."""
    gateway_port, gateway_media = free_port(), free_port()
    relayed_gateway(edge, "again", gateway_port, "1768")
    gateway = sipp(workdir, "media_gateway", gateway_port, args=("-mp", str(gateway_media)))
    wait_bound(gateway_port)
    scenario = (SCENARIOS / "late_caller.xml").read_text()
    # Its ACK 17 s after the 200: the gateway resends it at 0.5, 1.5, 3.5, 7.5 and 15.5 s, so
    # a restart that takes a loaded machine up to 15 s still gets one (and 17 s is within
    # the gateway's 20 s wait for the ACK).
    slow = workdir / "late_caller_slow_ack.xml"
    pause = 'rrs="true" />\n  <pause milliseconds="17000" />'
    slow.write_text(scenario.replace('rrs="true" />', pause))
    caller = sipp(
        workdir, slow, free_port(), remote=edge.sip_port,
        args=("-s", "17680001", "-mp", str(free_port()), "-set", "hold", "1000"),
    )  # fmt: skip # SIPp's options together
    until(lambda: len(media_ports(caller, "SIP/2.0 200")) >= 1, lambda: f"no 200: {edge.log()}")
    edge.kill()
    edge.start()
    assert caller.wait() == 0, caller.errors() + edge.log()
    assert gateway.wait() == 0, gateway.errors()
    ports = media_ports(caller, "SIP/2.0 200")
    assert len(ports) >= 2, caller.messages()  # the first and a retransmission at least
    assert len(set(ports)) == 1 and ports[0] in range(daemon.port_min, daemon.port_max + 1)
    reoffered = metric(edge, 'callmesh_rtpengine_requests_total{command="offer"}')
    assert reoffered >= 1  # the new process asked: a 200 with no transaction, offered again
    until(lambda: sessions(daemon) == [], lambda: f"left: {sessions(daemon)}: {edge.log()}")


def test_only_the_sdp_part_of_a_multipart_invite_is_rewritten(
    edge: Edge, daemon: Daemon, workdir: Path
) -> None:
    gateway_port, caller_media = free_port(), free_port()
    relayed_gateway(edge, "multipart", gateway_port, "1769")
    gateway = sipp(workdir, "media_gateway", gateway_port, args=("-mp", str(free_port())))
    wait_bound(gateway_port)
    caller = sipp(
        workdir, "multipart_caller", free_port(), remote=edge.sip_port,
        args=("-s", "17690001", "-mp", str(caller_media)),
    )  # fmt: skip # SIPp's options together
    assert caller.wait() == 0, caller.errors() + edge.log()
    assert gateway.wait() == 0, gateway.errors()
    [offered] = set(media_ports(gateway, "INVITE"))
    assert offered in range(daemon.port_min, daemon.port_max + 1) and offered != caller_media
    sent, received = parts(caller.messages(), "sent"), parts(gateway.messages(), "received")
    assert len(sent) == len(received) == 3 and "m=audio" in sent[1]
    assert (received[0], received[2]) == (sent[0], sent[2])  # byte for byte
    assert received[1] != sent[1] and f"m=audio {offered} " in received[1]
    until(lambda: sessions(daemon) == [], lambda: f"left: {sessions(daemon)}")


def test_late_offer_calls_answered_refused_and_cancelled_leave_no_session(
    edge: Edge, daemon: Daemon, workdir: Path
) -> None:
    """Refused and cancelled after early media: a 183 with the callee's offer made a session.
    The answered calls last 1 s: a BYE sent at once can overtake the ACK the edge holds for
    rtpengine's answer (docs/media.md), which the strict SIPp gateway takes as a failed call."""
    scenarios: dict[str, tuple[str | Path, str, str]] = {
        "answered": ("media_gateway", "late_caller", "17710001"),
        "refused": ("late_gateway_refuses", "late_caller_refused", "17720001"),
        "cancelled": ("late_gateway_early_media", "late_caller_cancel", "17730001"),
    }
    relayed = calls_leave_no_session(edge, daemon, workdir, scenarios, hold=1000)
    assert relayed == 3 * PER_OUTCOME  # every call's offer (200 or 183) was taken
