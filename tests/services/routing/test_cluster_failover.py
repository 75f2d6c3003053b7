"""Route commands through a 3-node RabbitMQ cluster while a node is killed.

The routing service, an edge's routing cache and a sender each get every
node's URL; commands (each with its own ``message_id``) are sent at a steady
pace, resent with the same id when the bus says the broker is away, and the
node holding the routing service's connection is SIGKILLed a third of the way
through. Every bus that was on that node is back on another within 5 s, and
every command is applied exactly once: each gateway stored, the table's
version advanced by exactly the number of commands (a redelivered or resent
command changes nothing), the edge's cache at that version.

Starting three nodes takes about 20 s on a busy machine; the command count is
``CALLMESH_TEST_CLUSTER_COMMANDS`` (60 by default).
"""

from __future__ import annotations

import asyncio
import os
import time

import orjson
import pytest
import redis.asyncio as aioredis

from deploy.labs.rabbit_cluster import RabbitCluster, rabbit_cluster
from shared.bus import BusUnavailable
from shared.bus.amqp import AmqpBus
from shared.routing_table.store import RoutingStore
from shared.store import Store
from tests.conftest import REDIS_URL
from tests.services.accounting.support import until, until_async
from tests.services.routing.support import Deployment, deployment

pytestmark = [pytest.mark.integration, pytest.mark.lab]

COMMANDS = int(os.environ.get("CALLMESH_TEST_CLUSTER_COMMANDS", "60"))
PACE = 0.03
RECONNECT_LIMIT = 5.0


async def _send(sender: AmqpBus, n: int) -> None:
    """Command ``n``, resent with the same id while the bus says the broker is away."""
    body = orjson.dumps(
        {"op": "upsert", "kind": "gateway", "id": f"c{n}", "data": {"address": "sip:192.0.2.7"}}
    )
    for _ in range(10):
        try:
            await sender.send("routing.commands", body, message_id=f"command-{n}")
            return
        except BusUnavailable:
            await asyncio.sleep(0.2)
    raise AssertionError(f"command {n} could not be sent")


async def _kill_and_time(cluster: RabbitCluster, routing: Deployment) -> float:
    """Kill the routing service's node; the longest time a bus on it took to be back."""
    victim = cluster.node_at(str(routing.buses[0].node))
    moved = [bus for bus in routing.buses if bus.node == victim.address]
    killed = time.monotonic()
    cluster.kill(victim)
    back: dict[int, float] = {}
    for _ in range(int(RECONNECT_LIMIT * 2 / 0.02)):
        for number, bus in enumerate(moved):
            if number not in back and bus.connected and bus.node != victim.address:
                back[number] = time.monotonic() - killed
        if len(back) == len(moved):
            break
        await asyncio.sleep(0.02)
    assert len(back) == len(moved), "a bus never came back"
    return max(back.values())


@pytest.mark.asyncio(loop_scope="function")  # its own loop (and so its own Redis client): in
# the session's loop, a test of tests/shared/bus/test_amqp.py run after it hung at times
async def test_route_commands_are_applied_once_each_through_a_node_loss(namespace: str) -> None:
    redis_store = Store(aioredis.Redis.from_url(REDIS_URL), namespace)
    try:
        await _drill(namespace, redis_store)
    finally:
        await redis_store.delete_namespace()
        await redis_store.close()


async def _drill(namespace: str, redis_store: Store) -> None:
    with rabbit_cluster() as cluster:
        async with deployment(namespace, redis_store, rabbitmq_url=cluster.url) as routing:
            edge = await routing.edge()
            sender = await routing.bus("sender")
            await routing.client.put("/v1/gateways/seed", json={"address": "sip:192.0.2.1"})
            versions = RoutingStore(redis_store)
            before = await versions.version()
            killing = None
            for n in range(COMMANDS):
                if n == COMMANDS // 3:
                    killing = asyncio.ensure_future(_kill_and_time(cluster, routing))
                await _send(sender, n)
                await asyncio.sleep(PACE)
            assert killing is not None
            slowest = await killing
            wanted = {f"c{n}" for n in range(COMMANDS)}

            async def all_stored() -> bool:
                return await versions.existing("gateway", wanted) == wanted

            await until_async(all_stored)
            after = await versions.version()
            print(f"slowest reconnect {slowest:.2f}s; version {before} -> {after}")
            assert slowest < RECONNECT_LIMIT
            assert after - before == COMMANDS  # each applied once: no redelivery counted twice
            await until(lambda: edge.version == after)
            assert wanted <= set(edge.index.gateways)
