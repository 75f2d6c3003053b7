"""The migration of classic work queues to quorum queues, on the real RabbitMQ."""

from __future__ import annotations

import aio_pika
import orjson
import pytest

from deploy.quorum_queues import main, migrate
from shared.bus import WorkMessage
from shared.bus.amqp import AmqpBus
from tests.conftest import RABBITMQ_URL
from tests.shared.bus.support import until
from tests.shared.bus.test_amqp import rabbitmqctl

pytestmark = pytest.mark.integration


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that only holds the queue."""


async def _types(namespace: str) -> dict[str, str]:
    listing = await rabbitmqctl("list_queues", "--no-table-headers", "name", "type")
    return dict(line.split("\t") for line in listing.splitlines() if namespace in line)


async def test_a_classic_queue_becomes_a_quorum_queue_with_its_messages_in_order(
    namespace: str,
) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"{namespace}.routing.commands", durable=True)
        for n in range(3):
            message = aio_pika.Message(
                orjson.dumps({"n": n}), message_id=f"m{n}", headers={"x-n": n}
            )
            await channel.default_exchange.publish(message, queue.name)
        busy = await channel.declare_queue(f"{namespace}.registrar.register", durable=True)
        await busy.consume(_ignore)
        outcomes = await migrate(
            RABBITMQ_URL, namespace, ["routing.commands", "registrar.register", "nothing.here"]
        )
        assert outcomes == {
            f"{namespace}.routing.commands": "migrated to a quorum queue (3 message(s) moved)",
            f"{namespace}.registrar.register": "refused: 1 consumer(s) on it; stop them first",
            f"{namespace}.nothing.here": "absent",
        }
        assert (await _types(namespace)) == {
            f"{namespace}.routing.commands": "quorum",
            f"{namespace}.registrar.register": "classic",
        }
        again = await migrate(RABBITMQ_URL, namespace, ["routing.commands"])
        assert again == {f"{namespace}.routing.commands": "quorum already"}
        await channel.queue_delete(busy.name)
    bus = AmqpBus(RABBITMQ_URL, namespace, "routing", "r1")
    taken: list[WorkMessage] = []

    async def take(work: WorkMessage) -> None:
        taken.append(work)

    await bus.start()
    try:
        await bus.consume("routing.commands", take)  # no warning, no refusal: a quorum queue now
        await until(lambda: len(taken) == 3)
    finally:
        await bus.close()
        await bus.delete_topology()
    assert [(w.body, w.message_id, w.headers) for w in taken] == [
        (orjson.dumps({"n": n}), f"m{n}", {"x-n": n}) for n in range(3)
    ]


def test_without_a_broker_url_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLMESH_RABBITMQ_URL", raising=False)
    assert main([]) == 2
