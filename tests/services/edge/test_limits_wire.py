"""Shared limits on the wire: two edges with two workers each, SIPp callers and gateways.

One peer (loopback) with ``max_concurrent: 20``: 60 held calls offered across both
edges get exactly 20 answered, the rest 486; the leases are back to 0 once the calls
end, and those of an edge killed mid-call lapse within the lease time. A gateway
with a channel cap of 10: the 11th concurrent call goes to the next gateway of the
route.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from deploy.labs.ports import free_port
from tests.conftest import REDIS_URL
from tests.services.edge.support import (
    LOOPBACK,
    Edge,
    running_edge,
    sipp,
    wait_bound,
)

pytestmark = [pytest.mark.wire, pytest.mark.integration]

HOLD_MS = "10000"
"""Long enough that every call is offered while the first ones are still up."""


@pytest.fixture
def edge_settings() -> dict[str, str]:
    """The settings of both edges (a module testing other limits overrides this fixture)."""
    return {"edge_workers": "2", "trusted_networks": "192.0.2.1/32", "call_limit_lease": "3"}


@pytest.fixture
def edges(tmp_path: Path, edge_settings: dict[str, str]) -> Iterator[tuple[Edge, Edge]]:
    """Edge A (with the routing service) and edge B on the same namespace, two workers each."""
    with running_edge(tmp_path / "a", **edge_settings) as first:
        sip, http = free_port(), free_port()
        env = dict(
            first.env,
            CALLMESH_SIP_LISTEN=f"udp:{LOOPBACK}:{sip},tcp:{LOOPBACK}:{sip}",
            CALLMESH_HTTP_LISTEN=f"{LOOPBACK}:{http}",
        )
        (tmp_path / "b").mkdir()
        second = replace(first, sip_port=sip, http_port=http, workdir=tmp_path / "b", env=env)
        second.process, second.routing, second.starts = None, None, 0
        second.start()
        try:
            yield first, second
        finally:
            second.stop()


@pytest.fixture(autouse=True)
def _workdirs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()


def leases(namespace: str, entity: str) -> int:
    """Calls holding a lease of `entity` now (expired ones not counted)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        key = f"{namespace}:limits:calls:{entity}"
        return int(client.zcount(key, int(time.time() * 1000), "+inf"))
    finally:
        client.close()


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_a_peers_concurrent_calls_hold_across_two_edges_of_two_workers(
    edges: tuple[Edge, Edge], tmp_path: Path
) -> None:
    first, second = edges
    gw = free_port()
    first.route({"g": gw}, {"all": ("1", ["g"])})
    peer = {"addresses": [f"{LOOPBACK}/32"], "trusted": True, "limits": {"max_concurrent": 20}}
    second.wait_routed(first.put({"peers/pbx": peer}))
    gateway = sipp(tmp_path, "gateway", gw, calls=60)
    wait_bound(gw)
    args = ("-s", "14075551234", "-set", "hold", HOLD_MS, "-r", "30", "-l", "30")
    callers = [
        sipp(tmp_path, "caller", free_port(), remote=edge.sip_port, calls=30, args=args)
        for edge in (first, second)
    ]
    until(lambda: leases(first.namespace, "peer:pbx") == 20)
    # Sampled while the calls are held: never more than the limit.
    samples = []
    for _ in range(10):
        samples.append(leases(first.namespace, "peer:pbx"))
        time.sleep(0.1)
    assert max(samples) == 20, samples
    for caller in callers:
        caller.wait(timeout=60)
    assert gateway.received("INVITE") == 20, first.log()
    refused = sum(caller.messages().count("SIP/2.0 486 Busy Here") for caller in callers)
    assert refused >= 40  # each refusal once at least (a retransmission may repeat it)
    assert sum("concurrent call limit of peer:pbx" in c.messages() for c in callers) == 2
    try:
        until(lambda: leases(first.namespace, "peer:pbx") == 0)
    except AssertionError:
        held = still_held(first.namespace, "peer:pbx")
        raise AssertionError(f"still held: {held}\n{first.log()}") from None


def still_held(namespace: str, entity: str) -> list[str]:
    """The Call-IDs holding a lease of `entity` now: which calls did not end at the edge."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        key = f"{namespace}:limits:calls:{entity}"
        return [str(call) for call in client.zrangebyscore(key, int(time.time() * 1000), "+inf")]
    finally:
        client.close()


def test_a_gateway_at_its_channel_cap_passes_the_11th_call_to_the_next(
    edges: tuple[Edge, Edge], tmp_path: Path
) -> None:
    first, second = edges
    g1, g2 = free_port(), free_port()
    first.route({"g1": g1, "g2": g2}, {"all": ("1", ["g1", "g2"])})
    version = first.put({
        "gateways/g1": {"address": f"sip:{LOOPBACK}:{g1}", "limits": {"max_concurrent": 10}},
        "peers/pbx": {"addresses": [f"{LOOPBACK}/32"], "trusted": True},
    })  # fmt: skip # the table as it is put, one resource a line
    second.wait_routed(version)
    capped, spare = sipp(tmp_path, "gateway", g1, calls=11), sipp(tmp_path, "gateway", g2)
    wait_bound(g1)
    wait_bound(g2)
    args = ("-s", "14075551234", "-set", "hold", HOLD_MS, "-r", "20", "-l", "11")
    callers = [
        sipp(tmp_path, "caller", free_port(), remote=edge.sip_port, calls=n, args=args)
        for edge, n in ((first, 6), (second, 5))
    ]
    for caller in callers:
        assert caller.wait(timeout=60) == 0, caller.errors()
    assert (capped.received("INVITE"), spare.received("INVITE")) == (10, 1)
    until(lambda: leases(first.namespace, "gateway:g1") == 0)


def test_a_killed_edges_leases_lapse_within_the_lease_time(
    edges: tuple[Edge, Edge], tmp_path: Path
) -> None:
    """SIGKILL of edge B holding 8 calls: its leases stop being renewed and lapse (3 s here),
    while edge A's renewed ones stay."""
    first, second = edges
    gw = free_port()
    first.route({"g": gw}, {"all": ("1", ["g"])})
    peer = {"addresses": [f"{LOOPBACK}/32"], "trusted": True, "limits": {"max_concurrent": 20}}
    second.wait_routed(first.put({"peers/pbx": peer}))
    sipp(tmp_path, "gateway", gw, calls=16)
    wait_bound(gw)
    args = ("-s", "14075551234", "-set", "hold", "20000", "-r", "20", "-l", "8")
    for edge in (first, second):
        sipp(tmp_path, "caller", free_port(), remote=edge.sip_port, calls=8, args=args)
    until(lambda: leases(first.namespace, "peer:pbx") == 16)  # the positive control
    time.sleep(1.5)  # past a renewal (every lease/3): B's leases are renewed ones
    killed_ms = int(time.time() * 1000)
    second.kill()
    until(lambda: leases(first.namespace, "peer:pbx") == 8, timeout=10.0)
    # Within the lease time (3 s) of the kill, give or take a poll of `until`.
    assert time.time() * 1000 - killed_ms <= 3000 + 500
    # Edge A's 8 were renewed since: they end a lease time after the kill or later.
    client = redis.Redis.from_url(REDIS_URL)
    try:
        key = f"{first.namespace}:limits:calls:peer:pbx"
        renewed = int(client.zcount(key, killed_ms + 3000, "+inf"))
    finally:
        client.close()
    assert renewed == 8
