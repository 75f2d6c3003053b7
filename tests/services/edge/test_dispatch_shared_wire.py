"""least_calls over two edges of two workers on the wire: a call held through edge A counts
when edge B chooses, so B's call goes to the other box; with the counts per worker
(``CALLMESH_DISPATCHER_SHARE_INTERVAL=0``, the control) B piles onto the busy box."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.services.edge.health_support import box, running_health, wait_edge_state
from tests.services.edge.support import LOOPBACK, Edge, Sipp, free_port, sipp
from tests.services.edge.test_limits_wire import _workdirs, edges, until

__all__ = ["_workdirs", "edges"]
pytestmark = [pytest.mark.wire, pytest.mark.integration]

INTERVAL = "0.2"


@pytest.fixture(params=[INTERVAL, "0"], ids=["shared", "per-worker"])
def edge_settings(request: pytest.FixtureRequest) -> dict[str, str]:
    return {
        "edge_workers": "2",
        "trusted_networks": "127.0.0.1/32",
        "dispatcher_share_interval": str(request.param),
    }


def held_call(edge: Edge, workdir: Path, number: str) -> Sipp:
    args = ("-s", number, "-set", "hold", "6000")
    return sipp(workdir, "caller", free_port(), remote=edge.sip_port, calls=1, args=args)


def exchanged_since(namespace: str, field: str, within: float = 20.0) -> None:
    """Wait until a worker's counts in Redis hold a call at `field` ("<set>\\n<uri>"), then
    until every live worker has exchanged again: each then holds the cluster's totals with
    that call (no fixed sleep: a busy machine's exchanges come late)."""
    client = redis.Redis.from_url(REDIS_URL)
    workers = f"{namespace}:dispatch:workers"
    try:

        def counted() -> bool:
            keys = client.keys(f"{namespace}:dispatch:calls:*")
            return sum(int(client.hget(key, field) or 0) for key in keys) == 1

        def scores() -> dict[str, float]:
            found = client.zrange(workers, 0, -1, withscores=True)
            pairs = cast("list[tuple[bytes, float]]", found)
            return {worker.decode(): score for worker, score in pairs}

        def all_exchanged() -> bool:
            now = scores()  # a worker's score moves on with each of its exchanges
            return len(now) >= 4 and all(now[w] > seen.get(w, 0.0) for w in now)

        until(counted, within)
        seen = scores()
        until(all_exchanged, within)  # two edges of two workers, each since the call counted
    finally:
        client.close()


def test_least_calls_counts_the_calls_of_the_other_edge(
    edges: tuple[Edge, Edge], edge_settings: dict[str, str], tmp_path: Path
) -> None:
    first, second = edges
    ports = [free_port(), free_port()]
    boxes = [box(tmp_path, port) for port in ports]
    with running_health(first) as health:
        uris = [f"sip:{LOOPBACK}:{port}" for port in ports]
        body = {"algorithm": "least_calls", "destinations": [{"uri": uri} for uri in uris]}
        health.put_set("farm", body)
        first.route({}, {"farm": ("3201", ["@farm"])})
        for edge in edges:
            for uri in uris:
                wait_edge_state(edge, f"ds:farm:{uri}", "up")
        shared = edge_settings["dispatcher_share_interval"] != "0"
        callers = [held_call(first, tmp_path, "32015550001")]
        until(lambda: boxes[0].received("INVITE") == 1)  # a tie: the first box
        if shared:  # every worker, B's too, exchanged since A's call counted in Redis
            exchanged_since(first.namespace, f"farm\n{uris[0]}")
        callers.append(held_call(second, tmp_path, "32015550002"))
        until(lambda: sum(found.received("INVITE") for found in boxes) == 2)
        expected = [1, 1] if shared else [2, 0]
        assert [found.received("INVITE") for found in boxes] == expected, second.log()
        for caller in callers:
            assert caller.wait(timeout=30) == 0
