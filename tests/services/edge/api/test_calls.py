"""``GET /v1/calls/{call_id}/trace`` over a trace ring in this process: JSON, ladder, 404, token."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.edge.api import calls_router
from services.edge.api.calls import Gathered
from services.edge.runtime.trace_ring import TraceEntry, TraceRing
from shared.api.app import create_app

TOKEN = "t0k"
INVITE = "INVITE sip:bob@10.0.0.2 SIP/2.0"
RINGING = "SIP/2.0 180 Ringing"


def entry(when: float, call_id: str, first_line: str) -> TraceEntry:
    data = f"{first_line}\r\nCall-ID: {call_id}\r\n\r\n".encode()
    return TraceEntry(when, "in", "udp", ("10.0.0.1", 5070), ("::1", 5060), data)


@pytest.fixture
def ring() -> TraceRing:
    ring = TraceRing(3)
    ring.correlate = lambda call_id: call_id.removeprefix("CMH-~")  # as the capture does
    return ring


SIBLINGS: dict[str, list[dict[str, object]]] = {}
"""Another edge's messages by Call-ID, for the cluster-wide look-ups ("edge-b" saw them)."""


@pytest.fixture
async def api(ring: TraceRing) -> AsyncIterator[httpx.AsyncClient]:
    SIBLINGS.clear()

    async def trace(call_id: str, cluster: bool) -> Gathered:
        own = [dict(found.as_json(), edge="edge-a") for found in ring.of_call(call_id)]
        if not cluster:
            return Gathered(own)
        theirs = [dict(m, edge="edge-b") for m in SIBLINGS.get(call_id, [])]
        return Gathered(own + theirs, ["edge-c"] if call_id.startswith("partial") else [])

    app = create_app("edge", [calls_router(trace)], [], TOKEN)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client


async def test_a_call_is_found_by_either_legs_call_id_in_time_order(
    api: httpx.AsyncClient, ring: TraceRing
) -> None:
    ring.add(entry(2.0, "CMH-~a@x", RINGING))
    ring.add(entry(1.0, "a@x", INVITE))
    ring.add(entry(1.5, "b@x", INVITE))
    for name in ("a@x", "CMH-~a@x"):
        reply = await api.get(f"/v1/calls/{name}/trace")
        assert reply.status_code == 200, reply.text
        messages = reply.json()["messages"]
        assert [m["time"] for m in messages] == [1.0, 2.0]
        assert messages[0] == {
            "time": 1.0,
            "direction": "in",
            "transport": "udp",
            "source": "10.0.0.1:5070",
            "destination": "[::1]:5060",
            "call_id": "a@x",
            "correlation_id": "a@x",
            "message": f"{INVITE}\r\nCall-ID: a@x\r\n\r\n",
            "edge": "edge-a",
        }
        assert (reply.json()["edges"], reply.json()["partial"]) == (["edge-a"], False)


async def test_the_text_ladder_has_a_line_per_message_then_each_in_full(
    api: httpx.AsyncClient, ring: TraceRing
) -> None:
    ring.add(entry(0.5, "a@x", INVITE))
    ring.add(entry(0.75, "a@x", RINGING))
    reply = await api.get("/v1/calls/a@x/trace", params={"format": "text"})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    lines = reply.text.splitlines()
    ladder = "00:00:00.500000  10.0.0.1:5070 -> [::1]:5060  udp "
    assert lines[0] == ladder + " INVITE sip:bob@10.0.0.2 SIP/2.0  [a@x]"
    assert lines[1].startswith("00:00:00.750000  10.0.0.1:5070 -> [::1]:5060  udp  SIP/2.0 180")
    assert "Call-ID: a@x" in reply.text


async def test_a_call_the_ring_has_moved_past_is_404(
    api: httpx.AsyncClient, ring: TraceRing
) -> None:
    ring.add(entry(1.0, "a@x", INVITE))
    assert (await api.get("/v1/calls/a@x/trace")).status_code == 200  # positive control
    for n in range(3):
        ring.add(entry(2.0 + n, f"c{n}", INVITE))
    reply = await api.get("/v1/calls/a@x/trace")
    assert reply.status_code == 404 and "aged out" in reply.json()["detail"]


async def test_bad_requests_get_4xx(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/calls/a@x/trace", params={"format": "pcap"})).status_code == 422
    assert (await api.get(f"/v1/calls/{'x' * 600}/trace")).status_code == 422
    for hostile in ("a@x%0Aother", "a@x%0D", "a%00x", "a%20x"):  # no such Call-ID in SIP
        reply = await api.get(f"/v1/calls/{hostile}/trace")
        assert reply.status_code == 422, hostile
    anonymous = await api.get("/v1/calls/a@x/trace", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_the_other_edges_parts_are_merged_in_time_order_unless_the_scope_is_this_edge(
    api: httpx.AsyncClient, ring: TraceRing
) -> None:
    ring.add(entry(1.0, "a@x", INVITE))
    ring.add(entry(4.0, "a@x", RINGING))
    SIBLINGS["a@x"] = [entry(2.0, "a@x", INVITE).as_json(), entry(3.0, "a@x", RINGING).as_json()]
    reply = (await api.get("/v1/calls/a@x/trace")).json()
    assert [(m["time"], m["edge"]) for m in reply["messages"]] == [
        (1.0, "edge-a"), (2.0, "edge-b"), (3.0, "edge-b"), (4.0, "edge-a")
    ]  # fmt: skip # one ladder
    assert (reply["edges"], reply["partial"], reply["unanswered"]) == (
        ["edge-a", "edge-b"], False, []
    )  # fmt: skip # the three fields side by side
    own = (await api.get("/v1/calls/a@x/trace", params={"scope": "edge"})).json()
    assert [m["time"] for m in own["messages"]] == [1.0, 4.0]
    text = (await api.get("/v1/calls/a@x/trace", params={"format": "text"})).text
    assert text.splitlines()[1].startswith("00:00:02.000000  edge-b  10.0.0.1:5070 -> ")
    SIBLINGS["b@x"] = SIBLINGS["a@x"]
    assert (await api.get("/v1/calls/b@x/trace")).status_code == 200  # only the other edge
    assert (await api.get("/v1/calls/b@x/trace", params={"scope": "edge"})).status_code == 404
    bad = await api.get("/v1/calls/a@x/trace", params={"scope": "world"})
    assert bad.status_code == 422


async def test_an_edge_that_did_not_answer_makes_the_trace_partial(
    api: httpx.AsyncClient, ring: TraceRing
) -> None:
    ring.add(entry(1.0, "partial@x", INVITE))
    reply = (await api.get("/v1/calls/partial@x/trace")).json()
    assert (reply["partial"], reply["unanswered"]) == (True, ["edge-c"])
    text = await api.get("/v1/calls/partial@x/trace", params={"format": "text"})
    assert text.text.startswith("partial: no answer from edge-c\n")
    gone = await api.get("/v1/calls/partial-gone@x/trace")
    assert gone.status_code == 404 and "no answer from edge-c" in gone.json()["detail"]
