"""``POST /v1/calls/{id}:hangup`` on one edge: the BYEs sent from the edge that answered the
call when it is another one and answers, else from this one.

The accounting service, the other edge and the BYE sender are stand-ins (each is tested on
its own: `tests/services/edge/runtime/test_siblings.py`, `test_hangups.py`); the whole
path runs on the wire in `tests/services/edge/test_hangup_wire.py`.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response

from services.edge.api.accounting import Accounting
from services.edge.api.control import control_router
from services.edge.api.ending import CallEnder, answering_edges
from services.edge.runtime.hangups import Hangups
from services.edge.runtime.siblings import SiblingAnswer
from services.edge.runtime.worker_control import WorkerControlError
from tests.services.edge.control.test_byes import SIX
from tests.services.edge.control.test_plan import attempt
from tests.services.edge.runtime.test_fraud_hangups import Sender


def answered_at(edge: str, **fields: Any) -> dict[str, Any]:
    item = attempt(**fields)
    item["dialog"]["edge"] = edge
    return item


class Dialogs:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    async def dialogs(self, call_id: str) -> list[dict[str, Any]] | None:
        return self.items


class Others:
    """The other edges: what each answers to a hang-up passed on (absent: no answer)."""

    def __init__(self, answers: dict[str, SiblingAnswer]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    async def __call__(self, edge: str, call_id: str) -> SiblingAnswer | None:
        self.asked.append((edge, call_id))
        return self.answers.get(edge)


class Engine:
    """This edge's B2BUA: the (Call-ID, tag) of the pairs it holds, and those it ended."""

    def __init__(self, holds: set[tuple[str, str]]) -> None:
        self.holds = holds
        self.ended: list[tuple[str, str]] = []

    async def __call__(self, call_id: str, tag: str) -> bool:
        if (call_id, tag) not in self.holds:
            return False
        self.ended.append((call_id, tag))
        return True


def b2bua_at(edge: str, **fields: Any) -> dict[str, Any]:
    """An open attempt a B2BUA answered at `edge`: its dialog names leg B, no legs."""
    item = attempt(**fields)
    item["mode"] = "b2bua"
    item["dialog"] = {
        "to_tag": "cmb2b-a", "edge": edge, "cseq": None, "caller": None, "callee": None,
        "b2bua_leg_call_id": "leg-b",
    }  # fmt: skip # the dialog as one value
    return item


async def hang_up(
    items: list[dict[str, Any]],
    others: Others,
    sender: Sender,
    scope: str = "cluster",
    engine: Engine | None = None,
) -> Response:
    """``POST /v1/calls/c1:hangup`` of an edge named ``edge-a`` (`engine`: its B2BUA)."""
    app = FastAPI()
    found = (cast(Hangups, sender), SIX)
    accounting = cast(Accounting, Dialogs(items))
    router = control_router(accounting, CallEnder(lambda: found, "edge-a", others, engine))
    app.include_router(router, prefix="/v1")
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        return await client.post("/v1/calls/c1:hangup", params={"scope": scope})


DONE = SiblingAnswer(200, {"call_id": "c1", "byes": [{"to": "caller", "status": 200}]})


async def test_a_call_answered_by_another_edge_is_hung_up_by_it() -> None:
    others, sender = Others({"edge-b": DONE}), Sender()
    reply = await hang_up([answered_at("edge-b")], others, sender)
    assert reply.status_code == 200
    assert reply.json() == {**DONE.body, "edge": "edge-b"}
    assert others.asked == [("edge-b", "c1")] and sender.ended == []


async def test_its_answer_that_the_call_is_over_is_passed_on() -> None:
    ended = SiblingAnswer(409, {"detail": "the call has ended already"})
    reply = await hang_up([answered_at("edge-b")], Others({"edge-b": ended}), Sender())
    assert (reply.status_code, reply.json()["detail"]) == (409, "the call has ended already")


@pytest.mark.parametrize(
    ("answering", "scope"),
    [
        ("edge-a", "cluster"),  # this edge answered it
        ("edge-b", "edge"),  # passed on to this edge: never further
        ("edge-c", "cluster"),  # the answering edge gives no answer (gone): this one does it
        ("", "cluster"),  # an older record naming no edge
    ],
)
async def test_otherwise_this_edge_sends_the_byes(answering: str, scope: str) -> None:
    others, sender = Others({"edge-b": DONE}), Sender()
    reply = await hang_up([answered_at(answering)], others, sender, scope)
    assert reply.status_code == 200, reply.text
    assert reply.json()["edge"] == "edge-a"
    assert [bye["to"] for bye in reply.json()["byes"]] == ["caller", "callee"]
    assert sender.ended == ["c1"]
    assert others.asked == ([("edge-c", "c1")] if answering == "edge-c" else [])


async def test_a_hostile_scope_is_a_422() -> None:
    reply = await hang_up([answered_at("edge-b")], Others({}), Sender(), "everywhere")
    assert reply.status_code == 422


def test_the_answering_edges_are_those_of_the_open_attempts() -> None:
    items = [answered_at("edge-b"), answered_at("edge-c", state="complete"), attempt(legs=False)]
    assert answering_edges(items) == ["edge-b"]


async def test_a_call_answered_by_a_worker_of_an_edge_is_that_edges() -> None:
    """Workers name themselves ``<edge>-w<n>`` in the records; only the edge is announced."""
    others, sender = Others({"edge-b": DONE}), Sender()
    reply = await hang_up([answered_at("edge-b-w2")], others, sender)
    assert reply.json()["edge"] == "edge-b" and others.asked == [("edge-b", "c1")]
    others, sender = Others({"edge-b": DONE}), Sender()
    mine = await hang_up([answered_at("edge-a-w1")], others, sender)  # another worker of ours
    assert mine.json()["edge"] == "edge-a" and others.asked == [] and sender.ended == ["c1"]


async def test_a_b2bua_call_is_ended_by_the_engine_holding_it() -> None:
    engine, sender = Engine({("c1", "cmb2b-a")}), Sender()
    reply = await hang_up([b2bua_at("edge-a")], Others({}), sender, engine=engine)
    assert reply.status_code == 200, reply.text
    assert (reply.json()["mode"], reply.json()["edge"]) == ("b2bua", "edge-a")
    assert [bye["to"] for bye in reply.json()["byes"]] == ["caller", "callee"]
    assert engine.ended == [("c1", "cmb2b-a")] and sender.ended == []  # no BYE from records


async def test_a_b2bua_call_answered_elsewhere_is_passed_on_and_one_held_nowhere_is_409() -> None:
    others, engine = Others({"edge-b": DONE}), Engine(set())
    reply = await hang_up([b2bua_at("edge-b")], others, Sender(), engine=engine)
    assert reply.status_code == 200 and others.asked == [("edge-b", "c1")]
    reply = await hang_up([b2bua_at("edge-a")], Others({}), Sender(), engine=engine)
    assert reply.status_code == 409 and "B2BUA" in reply.text
    reply = await hang_up([b2bua_at("edge-a")], Others({}), Sender())  # no engine at all
    assert reply.status_code == 409


async def test_a_worker_holding_the_call_that_cannot_be_asked_is_a_clear_503_or_504() -> None:
    """The engine of another worker of this edge holds the pair (`runtime.worker_control`)."""

    class Unanswered(Engine):
        async def __call__(self, call_id: str, tag: str) -> bool:
            raise WorkerControlError(504, "worker 1 of this edge did not answer within 5 s")

    reply = await hang_up([b2bua_at("edge-a")], Others({}), Sender(), engine=Unanswered(set()))
    assert (reply.status_code, reply.json()["detail"]) == (
        504,
        "worker 1 of this edge did not answer within 5 s",
    )
