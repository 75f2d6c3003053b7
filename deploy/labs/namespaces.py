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
from shared.contracts.fraud import FRAUD_CALLS_QUEUE

RABBITMQ_URL = os.environ.get("CALLMESH_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("CALLMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def remove_namespace(namespace: str) -> None:
    """Delete the namespace's Redis keys, exchange, the routing service's queues and the edges'."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()
    delete_queue(namespace, "routing.commands")
    delete_queue(namespace, MEDIA_EXPIRED_QUEUE)  # an edge with rtpengine declares it
    delete_queue(namespace, FRAUD_CALLS_QUEUE)  # the routing service's call ends


def delete_queue(namespace: str, queue: str) -> None:
    """Delete the namespace's exchange and one durable work queue a test's process declared."""

    async def delete() -> None:
        bus = AmqpBus(RABBITMQ_URL, namespace, "test", "cleanup")
        await bus.start()
        await bus.declare_queue(queue)
        await bus.delete_topology()
        await bus.close()

    asyncio.run(delete())
