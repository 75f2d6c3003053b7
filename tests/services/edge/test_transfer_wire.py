"""``POST /v1/calls/{id}:transfer`` on the wire: a SIPp caller's B2BUA call to
SIPp agent 1 moved to SIPp agent 2 through a real edge and accounting service.

Agent 2 gets an INVITE without SDP and offers; the caller gets a re-INVITE carrying agent
2's SDP and answers; agent 2's ACK carries that answer; agent 1 gets a BYE; the caller's
leg stays up, and its BYE later ends the call at agent 2.  The platform is the hang-up wire
tests' (`test_hangup_wire`): the edge asks its accounting service for the call's record.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from deploy.labs.ports import free_port
from services.accounting.store import database_url
from tests.services.accounting.wire import Platform, traced_calls
from tests.services.edge.support import LOOPBACK, Edge, sipp, wait_bound
from tests.services.edge.test_hangup_wire import _live, _until
from tests.services.edge.test_hangup_wire import edge as edge  # noqa: PLC0414 - the fixture
from tests.services.edge.test_hangup_wire import no_sipp_left as no_sipp_left  # noqa: PLC0414
from tests.services.edge.test_hangup_wire import platform as platform  # noqa: PLC0414

pytestmark = [pytest.mark.wire, pytest.mark.integration]


def received(trace: str, method: str) -> list[str]:
    """The `method` requests a SIPp trace shows it received, each whole."""
    found = []
    for block in re.split(r"-{10,}", trace):
        if "message received" in block:
            message = block.split("bytes :", 1)[-1].strip()
            if message.startswith(method + " "):
                found.append(message)
    return found


def transferred_events(platform: Platform, call_id: str) -> list[dict[str, Any]]:
    """The ``edge.call.transferred`` events the accounting service stored for `call_id`."""
    url = database_url(platform.accounting.env["CALLMESH_ACCOUNTING_DATABASE_URL"], "")

    async def read() -> list[dict[str, Any]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text("SELECT data FROM call_events WHERE call_id = :c AND type = :t"),
                    {"c": call_id, "t": "edge.call.transferred"},
                )
                return [json.loads(row.data) for row in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


@pytest.mark.parametrize("by", ["uri", "number"])
def test_a_b2bua_call_is_transferred_from_one_agent_to_another(
    platform: Platform, edge: Edge, by: str
) -> None:
    """`to` a SIP URI, and a number routed by a rule of its own to agent 2's gateway."""
    first, second = free_port(), free_port()
    prefix = "2501" if by == "uri" else "2503"
    edge.put(
        {
            f"gateways/agent1-{by}": {"address": f"sip:{LOOPBACK}:{first}"},
            f"rules/agent1-{by}": {"prefix": prefix, "gateways": [f"agent1-{by}"], "mode": "b2bua"},
            f"gateways/agent2-{by}": {"address": f"sip:{LOOPBACK}:{second}"},
            f"rules/agent2-{by}": {"prefix": "2502", "gateways": [f"agent2-{by}"]},
        }
    )
    agent1 = sipp(platform.workdir, "agent", first, args=("-set", "who", "agent1"))
    agent2 = sipp(platform.workdir, "agent", second, args=("-set", "who", "agent2"))
    wait_bound(first)
    wait_bound(second)
    caller = sipp(
        platform.workdir,
        "caller_transferred",
        free_port(),
        remote=edge.sip_port,
        args=("-s", f"{prefix}5550001", "-set", "hold", "1500"),
    )
    _until(lambda: agent1.received("ACK") == 1, "ACKed by the caller")
    [call_id] = _until(lambda: list(traced_calls(caller)), "traced")
    to = f"sip:agent2@{LOOPBACK}:{second}" if by == "uri" else "25025550002"
    with edge.http() as api:
        _until(lambda: _live(api, gateway=f"agent1-{by}"), "listed as live")
        reply = api.post(f"/v1/calls/{call_id}:transfer", json={"to": to})
        assert reply.status_code == 202, reply.text + edge.log()
        assert reply.json()["mode"] == "b2bua" and reply.json()["to"] == to
        leg_c = reply.json()["leg_call_id"]
        assert caller.wait() == 0, caller.errors()
        assert agent1.wait() == 0, agent1.errors()
        assert agent2.wait() == 0, agent2.errors()
        seen_by_caller, seen_by_agent2 = caller.messages(), agent2.messages()
        [invite_c] = received(seen_by_agent2, "INVITE")
        assert "Content-Length: 0" in invite_c and "application/sdp" not in invite_c  # no offer
        assert leg_c in invite_c and call_id not in seen_by_agent2  # its own Call-ID only
        [reinvite] = received(seen_by_caller, "INVITE")
        assert "s=agent2" in reinvite and call_id in reinvite  # agent 2's offer, leg A
        [ack_c] = received(seen_by_agent2, "ACK")
        assert "s=answer2" in ack_c  # the caller's answer
        assert agent1.received("BYE") == 1  # the old leg hung up by the edge
        [bye] = received(seen_by_agent2, "BYE")  # the caller's, later, to agent 2
        assert leg_c in bye
        [record] = platform.accounting.settled({call_id}, time.time() - 60)[call_id]
        assert (record["state"], record["disposition"], record["hangup_side"]) == (
            "complete",
            "answered",
            "caller",
        )
        [done] = record["transfers"]
        assert (done["ok"], done["leg_call_id"], done["failed_at"]) == (True, leg_c, None)
        [event] = _until(lambda: transferred_events(platform, call_id), "event stored")
        assert (event["ok"], event["target"], event["b2bua_leg_call_id"]) == (
            True,
            to if by == "uri" else f"sip:25025550002@{LOOPBACK}:{second}",
            leg_c,
        )
        assert event["replaced_leg_call_id"] in agent1.messages()
        again = api.post(f"/v1/calls/{call_id}:transfer", json={"to": to})
        assert again.status_code == 409 and "ended already" in again.text


@pytest.mark.parametrize(
    ("body", "status"),
    [({"to": "not a uri"}, 422), ({"to": "sip:a@b", "x": 1}, 422), ({}, 422), ([1], 422)],
)
def test_hostile_transfers_are_a_clear_4xx(edge: Edge, body: Any, status: int) -> None:
    with edge.http() as api:
        assert api.post("/v1/calls/nosuch:transfer", json=body).status_code == status
        unknown = api.post("/v1/calls/nosuch:transfer", json={"to": "sip:a@192.0.2.1"})
        assert unknown.status_code == 404
