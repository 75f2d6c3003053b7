"""Dispatcher sets on the wire: an edge spreading DIDs over three SIPp "Asterisk" boxes.

Routing, health and edge run as processes on the real RabbitMQ and Redis; the
set is managed through the health API and a rule targets it as ``@set``. The
shares are counted on the boxes themselves (the INVITEs in their SIPp traces).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from shared.dispatcher import Call, Dispatcher, DispatcherSet
from tests.services.edge.health_support import (
    SETTLE,
    Health,
    box,
    edge_state,
    metric,
    place_calls,
    running_health,
    start_calls,
    wait_edge_state,
    wait_until,
)
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    Sipp,
    running_edge,
    sipp,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]


class Farm:
    """The edge, the health service and three boxes shared by the module's tests."""

    def __init__(self, edge: Edge, health: Health, workdir: Path) -> None:
        self.edge = edge
        self.health = health
        self.workdir = workdir
        self.ports = [free_port() for _ in range(3)]
        self.boxes = [box(workdir, port) for port in self.ports]

    def uri(self, index: int) -> str:
        return f"sip:{LOOPBACK}:{self.ports[index]}"

    def dispatch(self, set_id: str, prefix: str, body: Mapping[str, object]) -> DispatcherSet:
        """Create set ``set_id`` and route ``prefix`` to it; returns once the edge has both."""
        dispatcher_set = DispatcherSet.model_validate(body)
        self.health.put_set(set_id, body)
        self.edge.route({}, {set_id: (prefix, [f"@{set_id}"])})
        for destination in dispatcher_set.destinations:
            wait_edge_state(self.edge, f"ds:{set_id}:{destination.uri}", "up")
        return dispatcher_set

    def invites(self) -> list[int]:
        return [found.received("INVITE") for found in self.boxes]


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    workdir = tmp_path_factory.mktemp("edge-dispatch-wire")
    with running_edge(workdir) as edge, running_health(edge) as health:
        yield Farm(edge, health, workdir)


def shares_after(farm: Farm, number: str, calls: int, rate: int = 50) -> list[int]:
    """INVITEs each box got during ``calls`` calls to ``number`` (all must complete)."""
    before = farm.invites()
    counts = place_calls(farm.edge, farm.workdir, number, calls, rate=rate)
    assert (counts.successful, counts.failed) == (calls, 0), farm.edge.log()
    return [after - earlier for after, earlier in zip(farm.invites(), before, strict=True)]


def test_round_robin_gives_equal_shares(farm: Farm) -> None:
    destinations = [{"uri": farm.uri(i)} for i in range(3)]
    farm.dispatch("rr", "3101", {"algorithm": "round_robin", "destinations": destinations})
    shares = shares_after(farm, "31015550000", 300)
    assert sum(shares) == 300
    assert all(abs(share - 100) <= 6 for share in shares), shares


def test_weights_one_to_two_give_one_to_two(farm: Farm) -> None:
    destinations = [{"uri": farm.uri(0), "weight": 1}, {"uri": farm.uri(1), "weight": 2}]
    farm.dispatch(
        "wrr", "3102", {"algorithm": "weighted_round_robin", "destinations": destinations}
    )
    light, heavy, third = shares_after(farm, "31025550000", 600)
    assert (light + heavy, third) == (600, 0)
    assert abs(light / 600 - 1 / 3) <= 0.03, (light, heavy)


def test_call_id_hashing_is_stable_and_spreads(farm: Farm) -> None:
    body = {"algorithm": "hash_call_id", "destinations": [{"uri": farm.uri(i)} for i in range(3)]}
    dispatcher_set = farm.dispatch("hash", "3103", body)
    predicted = Dispatcher("hash", dispatcher_set)
    for call_id in ("stable-call-1", "stable-call-2", "stable-call-3"):
        expected = predicted.order(Call(call_id))[0].uri
        for _ in range(3):
            caller = sipp(
                farm.workdir,
                "caller",
                free_port(),
                remote=farm.edge.sip_port,
                args=("-s", "31035550000", "-set", "hold", "0", "-cid_str", call_id),
            )
            assert caller.wait() == 0, farm.edge.log()
        got = [
            f"Call-ID: {call_id}\n" in found.messages().replace("\r\n", "\n")
            for found in farm.boxes
        ]
        assert got == [farm.uri(i) == expected for i in range(3)], (call_id, expected)
        assert box_invites_with(farm.boxes, call_id) == 3
    shares = shares_after(farm, "31035550000", 150)
    assert all(share >= 25 for share in shares), shares  # 50 each expected


def box_invites_with(boxes: list[Sipp], call_id: str) -> int:
    """INVITEs received with ``call_id`` over all boxes."""
    total = 0
    for found in boxes:
        for block in found.messages().replace("\r\n", "\n").split("\n-----")[1:]:
            received = "message received" in block and "\n\nINVITE " in block
            total += received and f"\nCall-ID: {call_id}\n" in block
    return total


def test_failover_when_a_box_dies_mid_test(farm: Farm) -> None:
    doomed_port = free_port()
    doomed = box(farm.workdir, doomed_port)
    doomed_uri = f"sip:{LOOPBACK}:{doomed_port}"
    destinations = [{"uri": farm.uri(0)}, {"uri": farm.uri(1)}, {"uri": doomed_uri}]
    farm.dispatch("fo", "3104", {"algorithm": "round_robin", "destinations": destinations})
    target = f"ds:fo:{doomed_uri}"

    def attempts_on_doomed() -> float:
        return metric(
            farm.edge, "callmesh_edge_destination_attempts_total", set="fo", destination=doomed_uri
        )

    failovers_before = metric(farm.edge, "callmesh_edge_failovers_total")
    before = farm.invites()
    calls = start_calls(farm.edge, farm.workdir, "31045550000", 300, rate=30)
    wait_until(lambda: attempts_on_doomed() >= 20, SETTLE, lambda: "no calls reach the box")
    os.kill(doomed.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(
        lambda: edge_state(farm.edge, target) == "down",
        SETTLE,
        lambda: f"the edge never saw {target} down: {edge_state(farm.edge, target)}",
    )
    down_after = time.monotonic() - killed_at
    attempts_when_down = attempts_on_doomed()
    outcome = calls.outcome()

    # Calls kept completing: only one caught in its dialog by the kill may fail.
    assert outcome.successful >= 299, (outcome, farm.edge.log())
    # First by failover (the box was still believed up) ...
    assert metric(farm.edge, "callmesh_edge_failovers_total") > failovers_before
    # ... then by the health state: not one more INVITE to it once it was down.
    assert attempts_on_doomed() == attempts_when_down
    others = [after - earlier for after, earlier in zip(farm.invites(), before, strict=True)]
    assert sum(others[:2]) >= outcome.successful - attempts_when_down, (others, down_after)
