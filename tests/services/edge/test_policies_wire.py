"""Topology hiding and header manipulation on the wire: SIPp through two real edges.

Edge B shares edge A's namespace, topology key and advertised address (as
the edges of one cluster share a name), so an in-dialog request may enter at
either; neither keeps dialog state.  Everything here runs on 127.0.0.1, so
"the caller side's internal address" is the caller's port: it, and the
caller's Contact user, must never reach the gateway.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from deploy.labs.ports import free_port
from services.edge.topology import new_secret
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    SipClient,
    refusing_scenario,
    running_edge,
    sipp,
    status_of,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]

KEYS = f"1:{new_secret()}"
INTERNAL = "192.168.1."


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-policies")


@pytest.fixture(scope="module")
def edges(workdir: Path) -> Iterator[tuple[Edge, Edge]]:
    with running_edge(workdir, topology_keys=KEYS) as first:
        other_dir = workdir / "b"
        other_dir.mkdir()
        port = free_port()
        env = dict(
            first.env,
            CALLMESH_SIP_LISTEN=f"udp:{LOOPBACK}:{port},tcp:{LOOPBACK}:{port}",
            CALLMESH_SIP_ADVERTISE=f"{LOOPBACK}:{first.sip_port}",
        )
        second = replace(
            first,
            sip_port=port,
            http_port=free_port(),
            workdir=other_dir,
            env=env,
            process=None,
            routing=None,
            starts=0,
        )
        second.env["CALLMESH_HTTP_LISTEN"] = f"{LOOPBACK}:{second.http_port}"
        try:
            second.start()
            yield first, second
        finally:
            second.stop()


def put(edge: Edge, path: str, body: dict[str, Any]) -> int:
    with edge.http(edge.routing_port) as client:
        reply = client.put(path, json=body)
    assert reply.status_code == 200, reply.text
    return int(reply.json()["version"])


def hidden_gateway(edges: tuple[Edge, Edge], gateway_id: str, port: int, prefix: str) -> None:
    put(
        edges[0],
        f"/v1/gateways/{gateway_id}",
        {
            "address": f"sip:{LOOPBACK}:{port}",
            "topology_hiding": {"mask_call_id": True},
        },
    )
    version = put(edges[0], f"/v1/rules/{gateway_id}", {"prefix": prefix, "gateways": [gateway_id]})
    for edge in edges:
        edge.wait_routed(version)


def received(trace: str) -> list[str]:
    """The messages SIPp received, each as its text."""
    parts = re.split(r"-+ \S+ \S+\n(?:UDP|TCP) message received \[\d+\] bytes :\n", trace)
    return [part.split("\n-----", 1)[0].strip().split("\n\n", 1)[0] for part in parts[1:]]


def headers_of(message: str) -> list[str]:
    return message.strip().splitlines()[1:]


def assert_nothing_inside_leaks(messages: list[str], caller_port: int) -> None:
    assert messages, "no message read from the trace: nothing was checked"
    for message in messages:
        for line in headers_of(message):
            assert f":{caller_port}" not in line, line
            if line.lower().startswith(("contact:", "m:")):  # the From user is the A-number
                assert "caller@" not in line.lower(), line
            assert INTERNAL not in line, line


def test_hidden_call_with_reinvite_survives_an_edge_restart(
    edges: tuple[Edge, Edge], workdir: Path
) -> None:
    first, _ = edges
    port, caller_port = free_port(), free_port()
    hidden_gateway(edges, "th1", port, "1601")
    gateway = sipp(workdir, "gateway_reinvite", port)
    wait_bound(port)
    caller = sipp(
        workdir,
        "caller_reinvite",
        caller_port,
        remote=first.sip_port,
        args=("-s", "16015550001", "-set", "hold", "4000"),
    )
    # Restart the edge while the call is up: the BYE crosses a fresh process.
    deadline = time.monotonic() + 20
    while gateway.received("ACK") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gateway.received("ACK") == 2, gateway.messages()
    first.kill()
    first.start()
    assert caller.wait() == 0, caller.errors() + first.log()
    assert gateway.wait() == 0, gateway.errors()
    messages = received(gateway.messages())
    methods = [m.split(" ", 1)[0] for m in messages]
    assert methods == ["INVITE", "ACK", "INVITE", "ACK", "BYE"]
    assert_nothing_inside_leaks(messages, caller_port)
    for message in messages:
        assert len([h for h in headers_of(message) if h.lower().startswith("via:")]) == 1
        call_id = next(h for h in headers_of(message) if h.lower().startswith("call-id:"))
        assert call_id.split(":", 1)[1].strip().startswith("CMH-")
    contact = next(h for h in headers_of(messages[0]) if h.startswith("Contact:"))
    assert f"<sip:{LOOPBACK}:{first.sip_port};th=" in contact


def test_gateway_bye_entering_at_the_other_edge(edges: tuple[Edge, Edge], workdir: Path) -> None:
    first, second = edges
    port, caller_port = free_port(), free_port()
    hidden_gateway(edges, "th2", port, "1602")
    bye_at_b = ("-set", "hold", "500", "-set", "bye_port", str(second.sip_port))
    gateway = sipp(workdir, "gateway_sends_bye", port, args=bye_at_b)
    wait_bound(port)
    caller = sipp(
        workdir,
        "caller_takes_bye",
        caller_port,
        remote=first.sip_port,
        args=("-s", "16025550001"),
    )
    assert gateway.wait() == 0, gateway.errors() + second.log()
    assert caller.wait() == 0, caller.errors()
    assert caller.received("BYE") == 1
    assert_nothing_inside_leaks(received(gateway.messages()), caller_port)
    bye = next(m for m in received(caller.messages()) if m.startswith("BYE"))
    assert f"BYE sip:caller@{LOOPBACK}:{caller_port}" in bye  # the Contact restored
    assert "CMH-" not in bye  # and the Call-ID unmasked


def test_seed_example_leaves_with_only_the_edge_via_and_rewritten_headers(
    edges: tuple[Edge, Edge], workdir: Path
) -> None:
    first, _ = edges
    port = free_port()
    hidden_gateway(edges, "th3", port, "1603")
    rule_sets: dict[str, dict[str, Any]] = {
        "a-number": {
            "scope": {"kind": "rule", "id": "th3"},
            "rules": [{"action": "set_from", "display_name": "Callmesh"}],
        },
        "carrier": {
            "scope": {"kind": "gateway", "id": "th3"},
            "rules": [
                {"action": "rewrite_ruri_user", "strip": 1, "prefix": "00"},
                {"action": "remove_header", "pattern": "^x-internal"},
                {"action": "add_header", "name": "X-Account", "value": "4711"},
            ],
        },
    }
    version = max(put(first, f"/v1/manipulations/{i}", body) for i, body in rule_sets.items())
    for edge in edges:
        edge.wait_routed(version)
    gateway = sipp(workdir, refusing_scenario(workdir, 486, "Busy Here"), port)
    wait_bound(port)
    client = SipClient(first.sip_port)
    try:
        client.send(asterisk_invite(client.port, "16035550001"))
        answer = client.final()
    finally:
        client.close()
    assert status_of(answer) == 486
    # The inside's Vias came back on the response, in order.
    vias = [line for line in answer.decode().splitlines() if line.startswith("Via:")]
    assert [v.split()[2].split(";")[0] for v in vias] == [
        f"{LOOPBACK}:{client.port}",
        "192.168.1.20:5060",
        "192.168.1.21:5060",
    ]
    assert gateway.wait() == 0
    invite = received(gateway.messages())[0]
    headers = headers_of(invite)
    assert invite.startswith(f"INVITE sip:006035550001@{LOOPBACK}:{port} SIP/2.0")
    assert len([h for h in headers if h.startswith("Via:")]) == 1
    assert next(h for h in headers if h.startswith("Via:")).startswith(
        f"Via: SIP/2.0/UDP {LOOPBACK}:{first.sip_port};branch="
    )
    assert [h for h in headers if h.startswith("Record-Route:")] == [
        h for h in headers if h.startswith(f"Record-Route: <sip:{LOOPBACK}:{first.sip_port};lr;th=")
    ]
    assert next(h for h in headers if h.startswith("Contact:")).startswith(
        f"Contact: <sip:{LOOPBACK}:{first.sip_port};th="
    )
    assert 'From: "Callmesh" <sip:asterisk@' in invite
    assert "X-Account: 4711" in headers
    assert not [h for h in headers if h.lower().startswith("x-internal")]
    assert INTERNAL not in invite


def asterisk_invite(port: int, number: str) -> bytes:
    """The seed's example: an Asterisk INVITE with two internal Vias and an internal RR."""
    return (
        f"INVITE sip:{number}@{LOOPBACK} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{port};branch=z9hG4bK-seed-1;rport\r\n"
        "Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK-seed-2\r\n"
        "Via: SIP/2.0/UDP 192.168.1.21:5060;branch=z9hG4bK-seed-3\r\n"
        "Record-Route: <sip:192.168.1.22;lr>\r\n"
        "From: <sip:asterisk@192.168.1.20>;tag=seed\r\n"
        f"To: <sip:{number}@{LOOPBACK}>\r\n"
        "Call-ID: seed-1@192.168.1.20\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:asterisk@192.168.1.20:5060>\r\n"
        "X-Internal-Trunk: pbx-7\r\n"
        "User-Agent: Asterisk PBX\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_what_the_edge_answers_a_hidden_gateway_itself_leaks_nothing(
    edges: tuple[Edge, Edge],
) -> None:
    first, _ = edges
    gateway, caller = SipClient(first.sip_port), SipClient(first.sip_port)
    try:
        hidden_gateway(edges, "th4", gateway.port, "1604")
        caller.send(asterisk_invite(caller.port, "16045550001"))
        invite = gateway.receive().decode()
        headers = headers_of(invite.split("\r\n\r\n", 1)[0].replace("\r\n", "\n"))
        field = {h.split(":", 1)[0].lower(): h.split(":", 1)[1].strip() for h in headers}
        vias = [h.split(":", 1)[1].strip() for h in headers if h.startswith("Via:")]
        ok = (
            f"SIP/2.0 200 OK\r\nVia: {vias[0]}\r\nRecord-Route: {field['record-route']}\r\n"
            f"From: {field['from']}\r\nTo: {field['to']};tag=gw4\r\n"
            f"Call-ID: {field['call-id']}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:gw@{LOOPBACK}:{gateway.port}>\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        gateway.send(ok.encode())
        assert status_of(caller.final()) == 200
        contact = field["contact"].strip("<>")
        bye = (
            f"BYE {contact} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{gateway.port};branch=z9hG4bKgw4bye\r\n"
            f"Route: {field['record-route']}\r\nFrom: {field['to']};tag=gw4\r\n"
            f"To: {field['from']}\r\nCall-ID: {field['call-id']}\r\nCSeq: 2 BYE\r\n"
            "Max-Forwards: 0\r\nContent-Length: 0\r\n\r\n"
        )
        gateway.send(bye.encode())
        answer = gateway.final().decode()
    finally:
        gateway.close()
        caller.close()
    assert answer.startswith("SIP/2.0 483 ")
    assert f"Call-ID: {field['call-id']}" in answer  # what the gateway sent, masked
    for inside in ("seed-1", INTERNAL, f":{caller.port}", "asterisk@192"):
        assert inside not in answer, (inside, answer)


def test_a_silent_hidden_gateway_gets_the_caller_a_408_of_its_own_call(
    edges: tuple[Edge, Edge],
) -> None:
    """The edge's 408 once carried the masked Call-ID and the rewritten From, so
    it matched no transaction of the caller's, which retransmitted until its own timeout."""
    first, _ = edges
    gateway, caller = SipClient(first.sip_port), SipClient(first.sip_port)
    try:
        hidden_gateway(edges, "th5", gateway.port, "1605")
        caller.send(asterisk_invite(caller.port, "16055550001"))
        assert "Call-ID: CMH-" in gateway.receive().decode()  # hidden; and never answered
        answer = caller.final().decode()  # after CALLMESH_FR_TIMEOUT (1 s here)
    finally:
        gateway.close()
        caller.close()
    assert answer.startswith("SIP/2.0 408 ")
    assert "Call-ID: seed-1@192.168.1.20\r\n" in answer
    assert "From: <sip:asterisk@192.168.1.20>;tag=seed\r\n" in answer
    assert "CMH-" not in answer
    vias = [line for line in answer.split("\r\n") if line.startswith("Via:")]
    assert len(vias) == 3 and "z9hG4bK-seed-1" in vias[0]
