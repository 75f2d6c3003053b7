"""B2BUA calls' media through a real rtpengine: a real edge, SIPp caller and gateway.

A b2bua rule to a gateway set ``media_relay: always``: the SDP the gateway receives (the
INVITE's offer and the re-INVITE's) and the SDP the caller receives (the 200s' answers)
name rtpengine's ports, not the other side's; rtpengine's session is the caller's Call-ID;
and once the call ended by a BYE from either side, rtpengine holds no session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from deploy.rtpengine import Daemon, running_rtpengine
from tests.services.edge.support import LOOPBACK, Edge, Sipp, running_edge, sipp, wait_bound
from tests.services.edge.test_media_wire import media_ports, sessions, until

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLER_PORTS = {40000, 40002}
"""The media ports of the caller's SDPs (b2bua_caller.xml, caller_sdp_takes_bye.xml)."""
GATEWAY_PORTS = {50000, 50002}
"""The gateway's (b2bua_gateway.xml, gateway_sdp_sends_bye.xml)."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("b2bua-media-wire")


@pytest.fixture(scope="module")
def daemon(workdir: Path) -> Iterator[Daemon]:
    with running_rtpengine(workdir) as running:
        yield running


@pytest.fixture(scope="module")
def edge(workdir: Path, daemon: Daemon) -> Iterator[Edge]:
    (workdir / "edge").mkdir()
    settings = {"rtpengine": daemon.instance.name, "rtpengine_ping_interval": "1"}
    with running_edge(workdir / "edge", **settings) as running:
        yield running


def relayed_b2bua_gateway(
    edge: Edge, workdir: Path, prefix: str, scenario: str, args: tuple[str, ...] = ()
) -> Sipp:
    port = free_port()
    edge.put(
        {
            f"gateways/m{prefix}": {"address": f"sip:{LOOPBACK}:{port}", "media_relay": "always"},
            f"rules/m{prefix}": {"prefix": prefix, "gateways": [f"m{prefix}"], "mode": "b2bua"},
        }
    )
    gateway = sipp(workdir, scenario, port, args=args)
    wait_bound(port)
    return gateway


def test_both_sides_sdps_name_rtpengine_and_the_callers_bye_ends_its_session(
    edge: Edge, workdir: Path, daemon: Daemon
) -> None:
    gateway = relayed_b2bua_gateway(edge, workdir, "2301", "b2bua_gateway")
    caller = sipp(
        workdir, "b2bua_caller", free_port(), remote=edge.sip_port,
        args=("-s", "23015550001", "-set", "hold", "1500"),
    )  # fmt: skip # SIPp's options together
    until(lambda: len(sessions(daemon)) == 1, lambda: f"no session: {edge.log()}")
    [call_id] = sessions(daemon)
    assert caller.wait() == 0, caller.errors() + edge.log()
    assert gateway.wait() == 0, gateway.errors() + edge.log()
    until(lambda: sessions(daemon) == [], lambda: f"left: {sessions(daemon)}")
    ports = range(daemon.port_min, daemon.port_max + 1)
    offered = set(media_ports(gateway, "INVITE"))  # the offer and the re-offer
    answered = set(media_ports(caller, "SIP/2.0 200"))  # the answer and the re-answer
    assert offered and offered <= set(ports) and not offered & CALLER_PORTS, offered
    assert answered and answered <= set(ports) and not answered & GATEWAY_PORTS, answered
    assert f"Call-ID: {call_id}" in caller.messages()  # rtpengine's call: the caller's
    assert call_id not in gateway.messages()
    assert "s=reoffer" in gateway.messages() and "s=reanswer" in caller.messages()


def test_the_gateways_bye_ends_the_session_too(edge: Edge, workdir: Path, daemon: Daemon) -> None:
    hold = ("-set", "hold", "1500", "-set", "bye_port", str(edge.sip_port))
    gateway = relayed_b2bua_gateway(edge, workdir, "2302", "gateway_sdp_sends_bye", hold)
    caller = sipp(
        workdir,
        "caller_sdp_takes_bye",
        free_port(),
        remote=edge.sip_port,
        args=("-s", "23025550001"),
    )
    until(lambda: len(sessions(daemon)) == 1, lambda: f"no session: {edge.log()}")
    assert caller.wait() == 0, caller.errors() + edge.log()
    assert gateway.wait() == 0, gateway.errors() + edge.log()
    assert caller.received("BYE") == 1
    until(lambda: sessions(daemon) == [], lambda: f"left: {sessions(daemon)}")
    ports = set(range(daemon.port_min, daemon.port_max + 1))
    offered, answered = set(media_ports(gateway, "INVITE")), set(media_ports(caller, "SIP/2.0 200"))
    assert offered and offered <= ports and not offered & CALLER_PORTS, offered
    assert answered and answered <= ports and not answered & GATEWAY_PORTS, answered
