"""B2BUA calls' media through a real rtpengine: a real edge, SIPp caller and gateway.

A b2bua rule to a gateway set ``media_relay: always``: the SDP the gateway receives (the
INVITE's offer and the re-INVITE's) and the SDP the caller receives (the 200s' answers)
name rtpengine's ports, not the other side's; rtpengine's session is the caller's Call-ID;
and once the call ended by a BYE from either side, rtpengine holds no session.  A relayed
call transferred to another agent (`POST /v1/calls/{id}:transfer`, the platform of
`test_transfer_wire`) stays relayed: the caller's re-INVITE and the new agent's ACK name
rtpengine's ports, rtpengine pairs the caller with the new agent, and the session is
deleted at the call's end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from deploy.rtpengine import Daemon, running_rtpengine
from tests.services.accounting.wire import Platform, running_platform, traced_calls
from tests.services.edge.support import LOOPBACK, Edge, Sipp, running_edge, sipp, wait_bound
from tests.services.edge.test_hangup_wire import _live, _until, control_edge
from tests.services.edge.test_media_wire import media_ports, ng, sessions, until
from tests.services.edge.test_transfer_wire import received

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLER_PORTS = {39000, 39002}
"""The media ports of the caller's SDPs (b2bua_caller.xml, caller_sdp_takes_bye.xml): below
any port rtpengine relays on (`deploy.labs.ports.RTPENGINE_FLOOR`), which a relayed SDP must
not name; inside its range, a relay port could be one of them by chance."""
GATEWAY_PORTS = {39500, 39502}
"""The gateway's (b2bua_gateway.xml, gateway_sdp_sends_bye.xml)."""
AGENT_PORT = 39800
"""The agents' (agent.xml); the transferred caller's are 39000 and 39002."""


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


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    (workdir / "platform").mkdir()
    with running_platform(workdir / "platform") as running:
        yield running


@pytest.fixture(scope="module")
def control(platform: Platform, daemon: Daemon) -> Iterator[Edge]:
    """The platform's edge with call control (its accounting service) and rtpengine."""
    with control_edge(platform, CALLMESH_RTPENGINE=daemon.instance.name) as running:
        yield running


def test_a_transferred_call_stays_relayed_until_its_end(
    platform: Platform, control: Edge, daemon: Daemon
) -> None:
    first, second = free_port(), free_port()
    control.put(
        {
            "gateways/magent1": {"address": f"sip:{LOOPBACK}:{first}", "media_relay": "always"},
            "rules/magent1": {"prefix": "2304", "gateways": ["magent1"], "mode": "b2bua"},
        }
    )
    agent1 = sipp(platform.workdir, "agent", first, args=("-set", "who", "agent1"))
    agent2 = sipp(platform.workdir, "agent", second, args=("-set", "who", "agent2"))
    wait_bound(first)
    wait_bound(second)
    caller = sipp(
        platform.workdir, "caller_transferred", free_port(), remote=control.sip_port,
        args=("-s", "23045550001", "-set", "hold", "3000"),
    )  # fmt: skip # SIPp's options together
    _until(lambda: agent1.received("ACK") == 1, "ACKed by the caller")
    [call_id] = _until(lambda: list(traced_calls(caller)), "traced")
    assert sessions(daemon) == [call_id]
    with control.http() as api:
        _until(lambda: _live(api, gateway="magent1"), "listed as live")
        to = f"sip:agent2@{LOOPBACK}:{second}"
        reply = api.post(f"/v1/calls/{call_id}:transfer", json={"to": to})
        assert reply.status_code == 202, reply.text + control.log()
    _until(lambda: agent2.received("ACK") == 1, "the new agent ACKed")
    assert sessions(daemon) == [call_id]  # not deleted by the transfer
    [ack_c] = received(agent2.messages(), "ACK")
    parties = links(daemon, call_id)
    [agent2_tag] = [tag for tag in parties if f"tag={tag}" in ack_c]  # leg C's To tag
    [caller_tag] = parties[agent2_tag]["subscriptions"]  # C hears the caller only...
    assert f"tag={caller_tag}" in caller.messages()
    assert parties[caller_tag]["subscribers"] == [agent2_tag], parties  # ...who speaks to C only
    assert caller.wait() == 0, caller.errors()
    assert agent1.wait() == 0, agent1.errors()
    assert agent2.wait() == 0, agent2.errors()
    until(lambda: sessions(daemon) == [], lambda: f"left: {sessions(daemon)}")
    ports = set(range(daemon.port_min, daemon.port_max + 1))
    [reoffered] = media_ports(caller, "INVITE")  # agent 2's offer, as the caller got it
    [reanswered] = media_ports(agent2, "ACK")  # the caller's answer, as agent 2 got it
    assert reoffered in ports and reoffered != AGENT_PORT, reoffered
    assert reanswered in ports and reanswered not in CALLER_PORTS, reanswered
    [reinvite] = received(caller.messages(), "INVITE")
    assert "s=agent2" in reinvite and "s=answer2" in ack_c  # their SDPs, rewritten
    assert agent1.received("BYE") == 1


def links(daemon: Daemon, call_id: str) -> dict[str, dict[str, list[str]]]:
    """Each party (tag) of rtpengine's call: whose media it receives (`subscriptions`) and
    who receives its own (`subscribers`)."""
    tags = ng(daemon, "query", **{"call-id": call_id})["tags"]
    assert isinstance(tags, dict)
    parties: dict[str, dict[str, list[str]]] = {}
    for tag, party in tags.items():
        assert isinstance(party, dict)
        parties[tag] = {}
        for key in ("subscriptions", "subscribers"):
            listed = party.get(key)
            assert isinstance(listed, list)
            parties[tag][key] = [
                entry["tag"].decode()
                for entry in listed
                if isinstance(entry, dict) and isinstance(entry["tag"], bytes)
            ]
    return parties
