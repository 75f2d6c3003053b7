"""The edge routes with gateway health: a real health service probes SIPp gateways.

Routing, health and edge run as processes on the real RabbitMQ and Redis;
per-gateway attempts are read from the edge's ``/metrics`` (what it sent), so
"no INVITE went to the dead gateway" is an exact count, not a timing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.labs.ports import free_port
from tests.services.edge.health_support import (
    DOWN_WITHIN,
    SETTLE,
    Health,
    box,
    metric,
    place_calls,
    running_health,
    wait_edge_state,
)
from tests.services.edge.support import Edge, running_edge
from tests.services.health.support import tap

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLS = 10


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("edge-health-wire")


@pytest.fixture(scope="module")
def edge(workdir: Path) -> Iterator[Edge]:
    with running_edge(workdir) as running:
        yield running


def attempts(edge: Edge, gateway: str) -> float:
    return metric(edge, "callmesh_edge_gateway_attempts_total", gateway=gateway)


def failovers(edge: Edge) -> float:
    return metric(edge, "callmesh_edge_failovers_total")


def calls_complete(edge: Edge, workdir: Path, number: str) -> None:
    counts = place_calls(edge, workdir, number, CALLS)
    assert (counts.successful, counts.failed) == (CALLS, 0), edge.log()


async def test_dead_gateway_down_in_time_skipped_then_back_and_operator_overrides(
    edge: Edge, workdir: Path
) -> None:
    dead, live = free_port(), free_port()
    box(workdir, live)
    edge.route({"d1": dead, "g2": live}, {"h1": ("1601", ["d1", "g2"])})
    async with tap(edge.namespace) as events:
        with running_health(edge) as health:
            first = await events.wait_for("gw:d1", lambda _: True, SETTLE)
            down = await events.wait_for("gw:d1", lambda s: s.state == "down", SETTLE)
            assert down.since - first.since <= DOWN_WITHIN, (first, down)
            assert down.reason == "timeout"
            wait_edge_state(edge, "gw:g2", "up")
            wait_edge_state(edge, "gw:d1", "down")
            calls_follow_health(edge, workdir, health, dead)


def calls_follow_health(edge: Edge, workdir: Path, health: Health, dead_port: int) -> None:
    # Down: every call goes straight to g2; d1 is not even tried (so no timeout either).
    before_dead, before_live = attempts(edge, "d1"), attempts(edge, "g2")
    before_failovers = failovers(edge)
    calls_complete(edge, workdir, "16015550001")
    assert attempts(edge, "d1") == before_dead
    assert attempts(edge, "g2") == before_live + CALLS
    assert failovers(edge) == before_failovers

    # It answers OPTIONS again (SIPp -aa): up, and first in the rule again.
    box(workdir, dead_port)
    wait_edge_state(edge, "gw:d1", "up")
    assert health.target("gw:d1")["reason"] == "answered 200"
    before_dead, before_live = attempts(edge, "d1"), attempts(edge, "g2")
    calls_complete(edge, workdir, "16015550002")
    assert attempts(edge, "d1") == before_dead + CALLS
    assert attempts(edge, "g2") == before_live

    # The operator takes it out: no calls to it, although it answers probes.
    assert health.post("/v1/targets/gw:d1:disable")["state"] == "disabled"
    wait_edge_state(edge, "gw:d1", "disabled")
    before_dead, before_live = attempts(edge, "d1"), attempts(edge, "g2")
    calls_complete(edge, workdir, "16015550003")
    assert attempts(edge, "d1") == before_dead
    assert attempts(edge, "g2") == before_live + CALLS

    # ... and back: probed in, then it takes the calls again.
    assert health.post("/v1/targets/gw:d1:enable")["state"] == "probing"
    wait_edge_state(edge, "gw:d1", "up")
    before_dead = attempts(edge, "d1")
    calls_complete(edge, workdir, "16015550004")
    assert attempts(edge, "d1") == before_dead + CALLS
