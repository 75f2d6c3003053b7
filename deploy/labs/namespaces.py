"""The servers tests and benchmarks use, and removing what a run left under its namespace.

Why here: tests and benchmarks both start services in a namespace of their own and
must leave nothing behind on the shared Redis and RabbitMQ (a benchmark must not
import the tests).
"""

from __future__ import annotations

import asyncio
import os

import redis

from shared.bus.amqp import AmqpBus
from shared.contracts.edge import MEDIA_EXPIRED_QUEUE
from shared.contracts.fraud import FRAUD_CALLS_QUEUE, FRAUD_HANGUPS_QUEUE
from shared.contracts.registrar import REGISTER_QUEUE, UNREACHABLE_QUEUE
from shared.contracts.routing import COMMANDS_QUEUE

RABBITMQ_URL = os.environ.get("CALLMESH_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("CALLMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


WORK_QUEUES = (
    COMMANDS_QUEUE,
    MEDIA_EXPIRED_QUEUE,  # an edge with rtpengine declares it
    FRAUD_CALLS_QUEUE,  # the routing service's call ends
    FRAUD_HANGUPS_QUEUE,  # the edges' fraud hang-ups
    REGISTER_QUEUE,
    UNREACHABLE_QUEUE,  # the edges' keepalives
)
"""The work queues the platform's processes declare in a namespace: each is a quorum queue, and
one left behind holds a file handle of the shared broker (deploy/labs/leftovers.py)."""


def remove_namespace(namespace: str) -> None:
    """Delete the namespace's Redis keys, exchange and the work queues its processes declare."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()
    delete_queues(namespace, *WORK_QUEUES)


def delete_queues(namespace: str, *queues: str) -> None:
    """Delete the namespace's exchange and durable work queues a test's processes declared
    (with their dead-letter queues)."""

    async def delete() -> None:
        bus = AmqpBus(RABBITMQ_URL, namespace, "test", "cleanup")
        await bus.start()
        for queue in queues:
            await bus.declare_queue(queue)
        await bus.delete_topology()
        await bus.close()

    asyncio.run(delete())
