"""``:hangup`` and ``:transfer`` of B2BUA calls held by either worker of an edge with two.

The pair lives in the engine of the worker its caller's Call-ID hashes to; the API runs in
the first worker, which asks the other over its hand-on socket (`runtime.worker_control`).
Each caller's Call-ID is chosen (SIPp's ``-cid_str``) to hash to the worker under test.
The platform is the hang-up wire tests' (`test_hangup_wire`), its edge restarted with
``CALLMESH_EDGE_WORKERS=2``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from services.edge.runtime.affinity import WorkerGroup
from tests.services.accounting.wire import Platform, running_platform
from tests.services.edge.support import LOOPBACK, Edge, sipp, wait_bound
from tests.services.edge.test_hangup_wire import _live, _until, control_edge, ended_by_the_edge
from tests.services.edge.test_hangup_wire import no_sipp_left as no_sipp_left  # noqa: PLC0414
from tests.services.edge.test_transfer_wire import received

pytestmark = [pytest.mark.wire, pytest.mark.integration]

WORKERS = 2


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("control-workers-wire")) as running:
        yield running


@pytest.fixture(scope="module")
def edge(platform: Platform) -> Iterator[Edge]:
    with control_edge(platform, CALLMESH_EDGE_WORKERS=str(WORKERS)) as control:
        assert f"({WORKERS} workers" in control.log()
        yield control


def call_id_of(worker: int) -> str:
    """A fresh Call-ID that the edge's workers hand to worker `worker`."""
    owner = WorkerGroup(0, WORKERS, Path("/nonexistent")).owner
    while True:
        call_id = f"{uuid.uuid4().hex}@{LOOPBACK}"
        if owner(call_id.encode()) == worker:
            return call_id


@pytest.mark.parametrize("worker", [0, 1])
def test_a_b2bua_call_held_by_either_worker_is_hung_up_from_the_api(
    platform: Platform, edge: Edge, worker: int
) -> None:
    port, prefix = free_port(), f"261{worker}"
    edge.put(
        {
            f"gateways/ctlw-{worker}": {"address": f"sip:{LOOPBACK}:{port}"},
            f"rules/ctlw-{worker}": {
                "prefix": prefix,
                "gateways": [f"ctlw-{worker}"],
                "mode": "b2bua",
            },
        }
    )
    gateway = sipp(platform.workdir, "gateway", port)
    wait_bound(port)
    call_id = call_id_of(worker)
    caller = sipp(
        platform.workdir,
        "caller_takes_bye",
        free_port(),
        remote=edge.sip_port,
        args=("-s", f"{prefix}5550001", "-cid_str", call_id),
    )
    _until(lambda: gateway.received("ACK") == 1, "ACKed")
    with edge.http() as api:
        listed = _until(lambda: _live(api, gateway=f"ctlw-{worker}"), "listed as live")
        assert [(item["call_id"], item["mode"]) for item in listed] == [(call_id, "b2bua")]
        reply = api.post(f"/v1/calls/{call_id}:hangup")
        assert reply.status_code == 200, reply.text + edge.log()
        assert reply.json()["mode"] == "b2bua"
        ended_by_the_edge(platform, api, call_id, caller, gateway)


def test_a_b2bua_call_held_by_the_other_worker_is_transferred_from_the_api(
    platform: Platform, edge: Edge
) -> None:
    first, second = free_port(), free_port()
    edge.put(
        {
            "gateways/ctlw-agent1": {"address": f"sip:{LOOPBACK}:{first}"},
            "rules/ctlw-agent1": {"prefix": "2621", "gateways": ["ctlw-agent1"], "mode": "b2bua"},
        }
    )
    agent1 = sipp(platform.workdir, "agent", first, args=("-set", "who", "agent1"))
    agent2 = sipp(platform.workdir, "agent", second, args=("-set", "who", "agent2"))
    wait_bound(first)
    wait_bound(second)
    call_id = call_id_of(1)
    caller = sipp(
        platform.workdir,
        "caller_transferred",
        free_port(),
        remote=edge.sip_port,
        args=("-s", "26215550001", "-set", "hold", "1500", "-cid_str", call_id),
    )
    _until(lambda: agent1.received("ACK") == 1, "ACKed by the caller")
    to = f"sip:agent2@{LOOPBACK}:{second}"
    with edge.http() as api:
        _until(lambda: _live(api, gateway="ctlw-agent1"), "listed as live")
        reply = api.post(f"/v1/calls/{call_id}:transfer", json={"to": to})
        assert reply.status_code == 202, reply.text + edge.log()
        leg_c = reply.json()["leg_call_id"]
        assert caller.wait() == 0, caller.errors()
        assert agent1.wait() == 0, agent1.errors()
        assert agent2.wait() == 0, agent2.errors()
        [reinvite] = received(caller.messages(), "INVITE")
        assert "s=agent2" in reinvite and call_id in reinvite
        assert agent1.received("BYE") == 1
        [bye] = received(agent2.messages(), "BYE")
        assert leg_c in bye
        [record] = platform.accounting.settled({call_id}, time.time() - 60)[call_id]
        [done] = record["transfers"]
        assert (done["ok"], done["leg_call_id"]) == (True, leg_c)
