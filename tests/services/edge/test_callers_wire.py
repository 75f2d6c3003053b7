"""Caller profiles on the wire: the caller's network picks the routing group and dialplan."""

from __future__ import annotations

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


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[Edge]:
    with running_edge(tmp_path, caller_profiles=f"{LOOPBACK}/32=7/intl") as running:
        yield running


def test_a_callers_dialplan_and_group_choose_the_gateway(edge: Edge, tmp_path: Path) -> None:
    """SIPp on loopback dials 0044…: its profile's dialplan makes it +44…, and group 7's rule
    for 44 (not group 0's rule for 0044) sends it to gateway g7 with the translated number."""
    g0, g7 = free_port(), free_port()
    edge.route({"g0": g0, "g7": g7}, {"national": ("0044", ["g0"])})
    edge.put(
        {
            "dialplans/intl": {"rules": [{"match": r"^00([1-9]\d+)$", "replace": r"+\1"}]},
            "rules/uk": {"group": "7", "prefix": "44", "priority": 0, "gateways": ["g7"]},
        }
    )
    gateway = sipp(tmp_path, "gateway", g7)
    wait_bound(g7)
    dialled = ("-s", "00442071234567")
    caller = sipp(tmp_path, "caller", free_port(), remote=edge.sip_port, args=dialled)
    assert caller.wait() == 0, edge.log()
    assert gateway.wait() == 0
    assert gateway.received("INVITE") == 1
    invite = gateway.messages().split("INVITE sip:", 1)[1]
    assert invite.startswith(f"+442071234567@{LOOPBACK}:{g7}")
