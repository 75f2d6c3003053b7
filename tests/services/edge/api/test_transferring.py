"""``POST /v1/calls/{id}:transfer`` on one edge: begun by the engine holding the B2BUA call,
passed on to the edge that answered it, refused (4xx, never 500) for everything else.

The accounting service, the other edge and the engine are stand-ins; the engine's flow is
`tests/services/edge/b2bua/test_transfer.py`, the whole path on the wire
`tests/services/edge/test_transfer_wire.py`."""

from __future__ import annotations

from typing import Any, cast

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response

from services.edge.api.accounting import Accounting
from services.edge.api.control import control_router
from services.edge.api.ending import CallEnder
from services.edge.api.transferring import CallTransferrer
from services.edge.runtime.siblings import SiblingAnswer
from services.edge.runtime.transfer_targets import TransferTargetError
from services.edge.runtime.worker_control import WorkerControlError
from tests.services.edge.api.test_control import Dialogs, answered_at, b2bua_at


class TransferEngine:
    """This edge's B2BUA: what it answers to each transfer, and the transfers asked."""

    def __init__(self, why: str = "", error: Exception | None = None) -> None:
        self.why = why
        self.error = error
        self.asked: list[tuple[str, str, str]] = []

    async def __call__(self, call_id: str, tag: str, to: str) -> tuple[str, str]:
        self.asked.append((call_id, tag, to))
        if self.error is not None:
            raise self.error
        return self.why, "" if self.why else "leg-c"


class OtherEdges:
    def __init__(self, answers: dict[str, SiblingAnswer]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str, str]] = []

    async def __call__(self, edge: str, call_id: str, to: str) -> SiblingAnswer | None:
        self.asked.append((edge, call_id, to))
        return self.answers.get(edge)


async def transfer(
    items: list[dict[str, Any]] | None,
    body: Any,
    engine: TransferEngine | None = None,
    others: OtherEdges | None = None,
    scope: str = "cluster",
) -> Response:
    """``POST /v1/calls/c1:transfer`` of an edge named ``edge-a``."""
    app = FastAPI()
    transferrer = CallTransferrer("edge-a", engine, others)
    accounting = cast(Accounting, Dialogs(items or []) if items is not None else NoRecord())
    ender = CallEnder(lambda: None, "edge-a")
    app.include_router(control_router(accounting, ender, transferrer), prefix="/v1")
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        return await client.post("/v1/calls/c1:transfer", params={"scope": scope}, json=body)


class NoRecord:
    async def dialogs(self, call_id: str) -> list[dict[str, Any]] | None:
        return None


AGENT = {"to": "sip:agent7@192.0.2.7:5070"}


async def test_a_b2bua_call_is_transferred_by_the_engine_holding_it() -> None:
    engine = TransferEngine()
    reply = await transfer([b2bua_at("edge-a")], AGENT, engine)
    assert reply.status_code == 202, reply.text
    assert reply.json() == {
        "call_id": "c1", "edge": "edge-a", "mode": "b2bua", "to": AGENT["to"],
        "state": "transferring", "leg_call_id": "leg-c",
    }  # fmt: skip # the answer as one value
    assert engine.asked == [("c1", "cmb2b-a", AGENT["to"])]
    assert (await transfer([b2bua_at("edge-a")], {"to": "+15550123"}, engine)).status_code == 202


async def test_one_answered_by_another_edge_is_passed_on_to_it() -> None:
    done = SiblingAnswer(202, {"call_id": "c1", "state": "transferring"})
    others, engine = OtherEdges({"edge-b": done}), TransferEngine()
    reply = await transfer([b2bua_at("edge-b")], AGENT, engine, others)
    assert (reply.status_code, reply.json()["edge"]) == (202, "edge-b")
    assert others.asked == [("edge-b", "c1", AGENT["to"])] and engine.asked == []
    refused = OtherEdges({"edge-b": SiblingAnswer(409, {"detail": "in flight"})})
    reply = await transfer([b2bua_at("edge-b")], AGENT, engine, refused)
    assert (reply.status_code, reply.json()["detail"]) == (409, "in flight")
    reply = await transfer([b2bua_at("edge-b")], AGENT, engine, others, scope="edge")
    assert reply.status_code == 202 and reply.json()["edge"] == "edge-a"  # never further


@pytest.mark.parametrize(
    ("items", "says"),
    [
        ([answered_at("edge-a")], "proxied call cannot be transferred"),
        ([b2bua_at("edge-a", state="complete")], "ended already"),
        ([b2bua_at("edge-a", answered=False)], "not answered yet"),
        ([], "ended already"),
    ],
)
async def test_a_call_that_cannot_be_transferred_is_409(
    items: list[dict[str, Any]], says: str
) -> None:
    engine = TransferEngine()
    reply = await transfer(items, AGENT, engine)
    assert reply.status_code == 409 and says in reply.json()["detail"]
    assert engine.asked == []


@pytest.mark.parametrize(
    ("why", "status"),
    [("elsewhere", 409), ("unknown", 409), ("transferring", 409), ("target", 422)],
)
async def test_the_engines_refusal_is_a_4xx(why: str, status: int) -> None:
    reply = await transfer([b2bua_at("edge-a")], AGENT, TransferEngine(why))
    assert reply.status_code == status


async def test_no_engine_is_409_and_an_unknown_call_404() -> None:
    assert (await transfer([b2bua_at("edge-a")], AGENT)).status_code == 409
    assert (await transfer(None, AGENT, TransferEngine())).status_code == 404


async def test_a_target_with_no_route_is_the_routings_answer() -> None:
    engine = TransferEngine(error=TransferTargetError(404, "no route for 999"))
    reply = await transfer([b2bua_at("edge-a")], {"to": "999"}, engine)
    assert (reply.status_code, reply.json()["detail"]) == (404, "no route for 999")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"to": ""},
        {"to": 7},
        {"to": None},
        {"to": "agent7"},
        {"to": "sip:agent 7@host"},
        {"to": "sip:a@b\r\nX: y"},
        {"to": "12ab"},
        {"to": "1" * 40},
        {"to": "sip:" + "a" * 300},
        {"to": "sip:a@b", "extra": 1},
        ["sip:a@b"],
        "sip:a@b",
    ],
)
async def test_a_hostile_body_is_422(body: Any) -> None:
    engine = TransferEngine()
    reply = await transfer([b2bua_at("edge-a")], body, engine)
    assert reply.status_code == 422, reply.text
    assert engine.asked == []


async def test_a_worker_holding_the_call_that_cannot_be_asked_is_a_clear_503() -> None:
    engine = TransferEngine(error=WorkerControlError(503, "worker 1 of this edge is not listening"))
    reply = await transfer([b2bua_at("edge-a")], AGENT, engine)
    assert (reply.status_code, reply.json()["detail"]) == (
        503,
        "worker 1 of this edge is not listening",
    )
