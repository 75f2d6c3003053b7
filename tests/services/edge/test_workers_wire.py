"""Two edge worker processes on one port: every call's messages reach the worker holding it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.edge.support import Edge, free_port, running_edge, sipp, wait_bound

pytestmark = [pytest.mark.wire, pytest.mark.integration]

CALLS = 40


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    with running_edge(tmp_path_factory.mktemp("edge-workers"), edge_workers="2") as running:
        yield running


def test_calls_from_many_source_ports_complete_across_workers(edge: Edge, tmp_path: Path) -> None:
    port = free_port()
    edge.route({"w1": port}, {"w1": ("1601", ["w1"])})
    gateway = sipp(tmp_path, "gateway", port, calls=CALLS)
    wait_bound(port)
    # Several callers (distinct source ports, so the kernel spreads them over the workers).
    callers = [
        sipp(tmp_path, "caller", free_port(), remote=edge.sip_port, calls=CALLS // 4,
             args=("-s", "16015550001", "-set", "hold", "100", "-r", "10"))
        for _ in range(4)
    ]  # fmt: skip
    assert [caller.wait(60) for caller in callers] == [0, 0, 0, 0], edge.log()
    assert gateway.wait(30) == 0
    assert gateway.received("BYE") == CALLS


def test_cancel_reaches_the_worker_holding_the_invite(edge: Edge, tmp_path: Path) -> None:
    port = free_port()
    edge.route({"w2": port}, {"w2": ("1602", ["w2"])})
    for _ in range(4):  # a few source ports: some land on each worker
        ringing = sipp(tmp_path, "gateway_ringing", port)
        wait_bound(port)
        caller = sipp(tmp_path, "caller_cancel", free_port(), remote=edge.sip_port,
                      args=("-s", "16025550001"))  # fmt: skip
        assert caller.wait() == 0, edge.log()
        assert ringing.wait() == 0
        assert ringing.received("CANCEL") == 1
