"""A call's trace gathered across two real edges: asked at one, it shows what both saw.

Edge A routes ``9…`` to edge B (stripping the 9), edge B routes ``1601…`` to a
SIPp gateway: a SIPp call to A crosses both.  ``GET /v1/calls/{id}/trace`` on
either edge returns both edges' messages (each naming its edge), on A with
``scope=edge`` only A's; once B is killed, A answers with its own part, flagged
``partial`` with B unanswered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    running_edge,
    sipp,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Edge, Edge, Path]]:
    workdir = tmp_path_factory.mktemp("edge-siblings")
    (workdir / "a").mkdir()
    with running_edge(workdir, instance="edge-b") as b:
        sip_port, http_port = free_port(), free_port()
        env = dict(
            b.env,
            CALLMESH_SIP_LISTEN=f"udp:{LOOPBACK}:{sip_port},tcp:{LOOPBACK}:{sip_port}",
            CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{http_port}",
            CALLMESH_INSTANCE="edge-a",
        )
        a = Edge(b.namespace, sip_port, http_port, b.routing_port, workdir / "a", env)
        try:
            a.start()
            yield a, b, workdir
        finally:
            a.stop()


def test_a_call_through_two_edges_has_one_trace_asked_at_either(
    edges: tuple[Edge, Edge, Path],
) -> None:
    a, b, workdir = edges
    gateway_port = free_port()
    version = b.put(
        {
            "gateways/b": {"address": f"sip:{LOOPBACK}:{b.sip_port}", "strip": 1},
            "gateways/gw": {"address": f"sip:{LOOPBACK}:{gateway_port}"},
            "rules/via-b": {"prefix": "9", "gateways": ["b"]},
            "rules/out": {"prefix": "1601", "gateways": ["gw"]},
        }
    )
    a.wait_routed(version)
    gateway = sipp(workdir, "gateway", gateway_port)
    wait_bound(gateway_port)
    caller = sipp(workdir, "caller", free_port(), remote=a.sip_port, args=("-s", "916015550001"))
    assert caller.wait(60) == 0, caller.errors() + a.log() + b.log()
    assert gateway.wait(60) == 0, gateway.errors()
    [call_id] = dict.fromkeys(re.findall(r"\nCall-ID: (\S+)", caller.messages()))

    for edge in (a, b):
        with edge.http() as client:
            reply = client.get(f"/v1/calls/{call_id}/trace")
        assert reply.status_code == 200, reply.text
        trace = reply.json()
        assert (trace["edges"], trace["partial"], trace["unanswered"]) == (
            ["edge-a", "edge-b"], False, []
        )  # fmt: skip # the three fields side by side
        by_edge = {
            name: [m for m in trace["messages"] if m["edge"] == name] for name in trace["edges"]
        }
        first_a, first_b = by_edge["edge-a"][0], by_edge["edge-b"][0]
        assert first_a["message"].startswith("INVITE sip:916015550001@")  # as the caller sent
        assert first_a["destination"] == f"{LOOPBACK}:{a.sip_port}"
        assert first_b["message"].startswith("INVITE sip:16015550001@")  # as A sent it on
        assert first_b["destination"] == f"{LOOPBACK}:{b.sip_port}"
        to_gateway = [m for m in by_edge["edge-b"] if m["destination"].endswith(f":{gateway_port}")]
        assert to_gateway and to_gateway[0]["message"].startswith("INVITE ")
        assert [m["time"] for m in trace["messages"]] == sorted(
            m["time"] for m in trace["messages"]
        )

    with a.http() as client:
        own = client.get(f"/v1/calls/{call_id}/trace", params={"scope": "edge"}).json()
        assert {m["edge"] for m in own["messages"]} == {"edge-a"}
        text = client.get(f"/v1/calls/{call_id}/trace", params={"format": "text"}).text
        ladder = text.split("\n\n", 1)[0].splitlines()
        assert any("  edge-b  " in line for line in ladder), text[:2000]

    b.kill()  # its announcement outlives it (until the time to live): asked, it cannot answer
    with a.http() as client:
        reply = client.get(f"/v1/calls/{call_id}/trace")
    assert reply.status_code == 200, reply.text
    partial = reply.json()
    assert (partial["partial"], partial["unanswered"], partial["edges"]) == (
        True, ["edge-b"], ["edge-a"]
    )  # fmt: skip # the three fields side by side
    assert partial["messages"] == own["messages"]
