"""B2BUA calls on the wire: a real edge and routing service, SIPp as caller and gateway.

A rule with `"mode": "b2bua"` makes the edge answer the caller and call the gateway anew
(docs/b2bua.md): each SIPp's message trace must show none of the other side's Call-ID,
tags, Via, Contact or Record-Route, and a BYE from either side must end both legs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from deploy.labs.ports import free_port
from tests.conftest import REDIS_URL
from tests.services.edge.health_support import box, running_health, wait_edge_state
from tests.services.edge.support import LOOPBACK, Edge, Sipp, running_edge, sipp, wait_bound

pytestmark = [pytest.mark.wire, pytest.mark.integration]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("b2bua-wire")


@pytest.fixture(scope="module")
def edge(workdir: Path) -> Iterator[Edge]:
    """Session intervals run 20 times faster (90 s in 4.5 s): only a test whose side asks
    for a session timer gets one, the others' calls are over sooner."""
    with running_edge(workdir, b2bua_session_timer_scale="0.05") as running:
        yield running


def b2bua_gateway(
    edge: Edge,
    workdir: Path,
    prefix: str,
    scenario: str,
    *,
    args: tuple[str, ...] = (),
    calls: int = 1,
) -> tuple[Sipp, int]:
    """SIPp running `scenario` (with `args`, for `calls` calls) as the gateway of a b2bua rule
    for `prefix`."""
    port = free_port()
    edge.put(
        {
            f"gateways/b{prefix}": {"address": f"sip:{LOOPBACK}:{port}"},
            f"rules/b{prefix}": {"prefix": prefix, "gateways": [f"b{prefix}"], "mode": "b2bua"},
        }
    )
    gateway = sipp(workdir, scenario, port, args=args, calls=calls)
    wait_bound(port)
    return gateway, port


def sent(trace: str, header: str) -> set[str]:
    """The values of `header` in the messages a SIPp trace shows it sent."""
    values = set()
    for block in re.split(r"-{10,}", trace):
        if "message sent" in block:
            values.update(re.findall(rf"^\s*{header}:\s*(.+?)\s*$", block, re.I | re.M))
    return values


def assert_hidden(one: Sipp, one_port: int, other: Sipp) -> None:
    """`other` saw nothing of `one`'s dialog: its Call-ID, tags, Via, Contact, Record-Route."""
    mine, seen = one.messages(), other.messages()
    call_ids = sent(mine, "Call-ID")
    tags = {tag for value in sent(mine, "From") | sent(mine, "To") for tag in tags_in(value)}
    assert call_ids and tags
    for secret in (*call_ids, *tags, "caller-proxy.invalid", "carrier-sbc.invalid"):
        if secret in mine:
            assert secret not in seen, secret
    port = f":{one_port}"
    for header in ("Via", "Contact", "Record-Route", "Route"):
        received = re.findall(rf"^\s*{header}:\s*(.+)$", seen, re.I | re.M)
        assert not [value for value in received if port in value], (header, received)


def tags_in(value: str) -> list[str]:
    return re.findall(r"tag=([^;>\s]+)", value)


def test_a_b2bua_call_hides_each_side_and_the_callers_bye_ends_both_legs(
    edge: Edge, workdir: Path
) -> None:
    gateway, gateway_port = b2bua_gateway(edge, workdir, "2201", "b2bua_gateway")
    caller_port = free_port()
    caller = sipp(
        workdir,
        "b2bua_caller",
        caller_port,
        remote=edge.sip_port,
        args=("-s", "22015550001", "-set", "hold", "0"),
    )
    assert caller.wait() == 0, caller.errors() + edge.log()
    assert gateway.wait() == 0, gateway.errors() + edge.log()
    assert [gateway.received(m) for m in ("INVITE", "ACK", "BYE")] == [2, 2, 1]
    assert_hidden(caller, caller_port, gateway)
    assert_hidden(gateway, gateway_port, caller)
    seen_by_gateway, seen_by_caller = gateway.messages(), caller.messages()
    assert "s=reoffer" in seen_by_gateway  # the caller's re-INVITE crossed with its SDP
    assert "s=reanswer" in seen_by_caller  # and the gateway's answer came back
    assert "caller-agent" not in seen_by_gateway and "gateway-agent" not in seen_by_caller


def test_the_gateways_bye_ends_both_legs(edge: Edge, workdir: Path) -> None:
    hold = ("-set", "hold", "200", "-set", "bye_port", str(edge.sip_port))
    gateway, gateway_port = b2bua_gateway(edge, workdir, "2202", "gateway_sends_bye", args=hold)
    caller_port = free_port()
    caller = sipp(
        workdir,
        "caller_takes_bye",
        caller_port,
        remote=edge.sip_port,
        args=("-s", "22025550001"),
    )
    assert caller.wait() == 0, caller.errors() + edge.log()
    assert gateway.wait() == 0, gateway.errors() + edge.log()
    assert caller.received("BYE") == 1
    assert_hidden(caller, caller_port, gateway)
    assert_hidden(gateway, gateway_port, caller)


def test_a_gateway_that_vanished_is_hung_up_by_the_session_timer(edge: Edge, workdir: Path) -> None:
    """The gateway answers with Session-Expires 90, the edge refreshing, then is gone: the
    refresh goes unanswered and at the expiry (90 - 30 s, 3 s here) the caller gets a BYE."""
    gateway, _ = b2bua_gateway(edge, workdir, "2203", "gateway_vanishes_after_answer")
    caller = sipp(
        workdir, "caller_takes_bye", free_port(), remote=edge.sip_port, args=("-s", "22035550001")
    )
    assert gateway.wait() == 0, gateway.errors() + edge.log()
    started = time.monotonic()
    assert caller.wait(timeout=60) == 0, caller.errors() + edge.log()
    assert time.monotonic() - started < 30  # the expiry's, not a transaction's 32 s timeout
    assert caller.received("BYE") == 1
    assert "session expired" in edge.log() or "session refresh failed" in edge.log()


def test_a_gateway_without_update_is_refreshed_by_reinvite_past_two_intervals(
    edge: Edge, workdir: Path
) -> None:
    """The gateway's 200 names `Session-Expires: 90;refresher=uac` and an Allow without
    UPDATE: the edge's refreshes are re-INVITEs offering the caller's SDP (the scenario
    checks each), their answers stay on leg B, and the call lives past two intervals (9 s
    at scale 0.05; unrefreshed, leg B would expire after 3 s) until the gateway's BYE."""
    bye = ("-set", "bye_port", str(edge.sip_port))
    gateway, _ = b2bua_gateway(edge, workdir, "2204", "gateway_refreshed_by_reinvite", args=bye)
    started = time.monotonic()
    caller = sipp(
        workdir,
        "caller_sdp_takes_bye",
        free_port(),
        remote=edge.sip_port,
        args=("-s", "22045550001"),
    )
    assert gateway.wait(timeout=60) == 0, gateway.errors() + edge.log()
    assert caller.wait(timeout=30) == 0, caller.errors() + edge.log()
    assert time.monotonic() - started > 2 * 90 * 0.05
    assert gateway.received("INVITE") >= 5 and gateway.received("UPDATE") == 0
    assert caller.received("INVITE") == 0  # the refreshes' answers did not cross
    assert caller.received("BYE") == 1


def test_a_b2bua_dispatcher_sets_calls_are_carried_by_the_b2bua(edge: Edge, workdir: Path) -> None:
    """A set with `"mode": "b2bua"` (the health service's API): its destination sees none of
    the caller's dialog, though the rule routing to the set says nothing of modes."""
    with running_health(edge) as health:
        box_port = free_port()
        farm_box = box(workdir, box_port)
        uri = f"sip:{LOOPBACK}:{box_port}"
        health.put_set("b2bfarm", {"destinations": [{"uri": uri}], "mode": "b2bua"})
        edge.put({"rules/b2204": {"prefix": "2204", "gateways": ["@b2bfarm"]}})
        wait_edge_state(edge, f"ds:b2bfarm:{uri}", "up")
        caller_port = free_port()
        caller = sipp(
            workdir, "caller", caller_port, remote=edge.sip_port, args=("-s", "22045550001")
        )
        assert caller.wait() == 0, caller.errors() + edge.log()
        farm_box.stop()
    assert farm_box.received("INVITE") == 1
    assert_hidden(caller, caller_port, farm_box)


def test_pairs_stay_on_the_worker_holding_them(workdir: Path) -> None:
    """Two workers: leg B's Call-IDs hash to the worker holding the pair (`runtime.affinity`
    hands each message to the worker its Call-ID hashes to), so the gateway's BYEs, on calls
    begun at either worker, reach their pair."""
    calls = 6
    (workdir / "workers").mkdir()
    with running_edge(workdir / "workers", edge_workers="2") as edge:
        hold = ("-set", "hold", "300", "-set", "bye_port", str(edge.sip_port))
        gateway, _port = b2bua_gateway(
            edge, workdir, "2203", "gateway_sends_bye", args=hold, calls=calls
        )
        caller = sipp(
            workdir,
            "caller_takes_bye",
            free_port(),
            remote=edge.sip_port,
            calls=calls,
            args=("-s", "22035550001"),
        )
        assert caller.wait() == 0, caller.errors() + edge.log()
        assert gateway.wait() == 0, gateway.errors() + edge.log()
        assert caller.received("BYE") == calls


def test_a_pair_goes_on_through_another_edge_after_its_edge_dies(workdir: Path) -> None:
    """Edge A holds the pair and is killed; the gateway's BYE reaches edge B, which loads the
    pair's record from Redis and ends both legs. Redis holds a live pair in a few hundred
    bytes, and nothing once it ended."""
    (workdir / "a").mkdir()
    (workdir / "b").mkdir()
    with running_edge(workdir / "a") as a, Redis.from_url(REDIS_URL) as redis:
        hold = ("-set", "hold", "3000")
        port, http = free_port(), free_port()
        env = dict(
            a.env,
            CALLMESH_SIP_LISTEN=f"udp:{LOOPBACK}:{port}",
            CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{http}",
            CALLMESH_EDGE_OUTBOX_DIR=str(workdir / "b" / "outbox"),
        )
        b = Edge(a.namespace, port, http, a.routing_port, workdir / "b", env)
        gateway, _port = b2bua_gateway(
            a, workdir, "2204", "gateway_sends_bye", args=(*hold, "-set", "bye_port", str(port))
        )
        b.start()
        try:
            caller = sipp(
                workdir,
                "caller_takes_bye",
                free_port(),
                remote=a.sip_port,
                args=("-s", "22045550001"),
            )
            keys = wait_for_keys(redis, a.namespace)
            size = sum(redis.memory_usage(key) or 0 for key in keys)
            print(f"Redis bytes per live B2BUA pair (MEMORY USAGE, 3 keys): {size}")
            assert 0 < size < 4000
            a.kill()
            assert caller.wait() == 0, caller.errors() + b.log()
            assert gateway.wait() == 0, gateway.errors() + b.log()
            assert caller.received("BYE") == 1
            assert wait_for_keys(redis, a.namespace, present=False) == []
        finally:
            b.stop()


def wait_for_keys(redis: Redis, namespace: str, *, present: bool = True) -> list[bytes]:
    """The B2BUA state keys of `namespace` once there are some (`present`) or none left."""
    deadline = time.monotonic() + 10
    while True:
        keys = sorted(redis.scan_iter(f"{namespace}:b2bua:*"))
        if bool(keys) == present or time.monotonic() > deadline:
            return keys
        time.sleep(0.05)
