"""B2BUA calls leave one right record each: a real edge in b2bua mode, SIPp caller and
gateways, the accounting service on RabbitMQ and PostgreSQL (docs/b2bua.md, "Call events").

The record is the caller's call (its Call-ID and From tag), says it was B2BUA and names
leg B's Call-ID; its gateway, attempts (a failover is two), duration and hang-up side are
those of the legs as SIPp saw them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy.labs.ports import free_port
from tests.services.accounting.wire import Platform, running_platform, traced_calls
from tests.services.edge.support import (
    LOOPBACK,
    Sipp,
    refusing_scenario,
    sipp,
    stop_all_sipp,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]

DURATION_TOLERANCE_MS = 100
"""The record's duration beside SIPp's (2xx seen to BYE sent): the edge stamps the 2xx it
relays and the BYE it receives, one loopback hop and a busy loop away."""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("b2bua-records-wire")


@pytest.fixture(scope="module")
def platform(workdir: Path) -> Iterator[Platform]:
    with running_platform(workdir) as running:
        yield running


@pytest.fixture(autouse=True)
def no_sipp_left() -> Iterator[None]:
    yield
    stop_all_sipp()


def b2bua_rule(platform: Platform, prefix: str, gateways: dict[str, int]) -> None:
    """A b2bua rule for `prefix` over `gateways` (id → SIPp port), in that order."""
    records: dict[str, Any] = {
        f"gateways/{name}": {"address": f"sip:{LOOPBACK}:{port}"} for name, port in gateways.items()
    }
    records[f"rules/b{prefix}"] = {"prefix": prefix, "gateways": list(gateways), "mode": "b2bua"}
    platform.edge.put(records)


def one_record(platform: Platform, caller: Sipp, since: float) -> dict[str, Any]:
    [(call_id, call)] = traced_calls(caller).items()
    [record] = platform.accounting.settled({call_id}, since, timeout=90)[call_id]
    assert record["mode"] == "b2bua"
    assert record["b2bua_leg_call_id"] not in (None, call_id)
    assert record["disposition"] == "answered" and record["final_status"] == 200
    assert call.duration_ms is not None
    assert abs(record["duration_ms"] - call.duration_ms) < DURATION_TOLERANCE_MS, (record, call)
    return record


def test_a_failed_over_call_hung_up_by_the_caller(platform: Platform, workdir: Path) -> None:
    since = time.time() - 1
    down, up = free_port(), free_port()
    b2bua_rule(platform, "2301", {"b2b-down": down, "b2b-up": up})
    refusing = sipp(workdir, refusing_scenario(workdir, 503, "Service Unavailable"), down)
    answering = sipp(workdir, "gateway", up)
    wait_bound(down)
    wait_bound(up)
    caller = sipp(
        workdir,
        "caller",
        free_port(),
        remote=platform.edge.sip_port,
        args=("-s", "23015550001", "-set", "hold", "600"),
    )
    for agent in (caller, refusing, answering):
        assert agent.wait(60) == 0, agent.errors() + platform.edge.log()
    record = one_record(platform, caller, since)
    assert record["gateway"] == "b2b-up"
    assert [(a["target"], a["status"]) for a in record["attempts"]] == [
        ("b2b-down", 503),
        ("b2b-up", 200),
    ]
    assert record["hangup_side"] == "caller"
    assert record["rule"] == "b2301"
    assert record["b2bua_leg_call_id"] in answering.messages()  # the gateway's own Call-ID


def test_a_call_hung_up_by_the_gateway(platform: Platform, workdir: Path) -> None:
    since = time.time() - 1
    port = free_port()
    b2bua_rule(platform, "2302", {"b2b-bye": port})
    hold = ("-set", "hold", "500", "-set", "bye_port", str(platform.edge.sip_port))
    gateway = sipp(workdir, "gateway_sends_bye", port, args=hold)
    wait_bound(port)
    caller = sipp(
        workdir,
        "caller_takes_bye",
        free_port(),
        remote=platform.edge.sip_port,
        args=("-s", "23025550001"),
    )
    for agent in (caller, gateway):
        assert agent.wait(60) == 0, agent.errors() + platform.edge.log()
    record = one_record(platform, caller, since)
    assert (record["gateway"], record["hangup_side"]) == ("b2b-bye", "callee")
    assert record["b2bua_leg_call_id"] in gateway.messages()
