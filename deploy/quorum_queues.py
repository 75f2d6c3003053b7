"""``python -m deploy.quorum_queues``: make a deployment's classic work queues quorum queues.

Why a tool: RabbitMQ cannot change a queue's type, and refuses to declare an
existing queue with another (PRECONDITION_FAILED), so the services keep using
a classic queue from before quorum queues (``shared.bus.amqp_link``) until it
is replaced. For each queue (``--queue``, repeatable; default: every work queue
of the contracts and its ``.dead`` queue) in ``CALLMESH_NAMESPACE`` on
``CALLMESH_RABBITMQ_URL``:

- absent, or a quorum queue already: left alone;
- classic with consumers: refused (stop the services that consume it first;
  senders may keep running: what they send meanwhile is moved too);
- classic: its messages are moved (each confirmed before it is acknowledged)
  to a temporary quorum queue ``{queue}.migrating``, the classic queue is
  deleted once empty and unused, declared again as a quorum queue, and the
  messages are moved back in their order; the temporary queue is deleted.
  The consumers bind it to their event patterns again when they start.

Prints one line per queue and exits non-zero if any was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from shared.bus.amqp_link import QUORUM
from shared.bus.nodes import parse_node_urls
from shared.contracts.accounting import CALLS_QUEUE
from shared.contracts.edge import MEDIA_EXPIRED_QUEUE
from shared.contracts.registrar import REGISTER_QUEUE, UNREACHABLE_QUEUE
from shared.contracts.routing import COMMANDS_QUEUE
from shared.settings import Settings

WORK_QUEUES = (COMMANDS_QUEUE, REGISTER_QUEUE, UNREACHABLE_QUEUE, CALLS_QUEUE, MEDIA_EXPIRED_QUEUE)
MOVE_ROUNDS = 10
"""Times a queue is emptied again when senders filled it while it was being emptied."""


async def migrate(url: str, namespace: str, names: Sequence[str]) -> dict[str, str]:
    """Each queue ``{namespace}.{name}`` → what became of it (see the module doc)."""
    connection = await _connect(url)
    outcomes: dict[str, str] = {}
    async with connection:
        for name in names:
            queue = f"{namespace}.{name}"
            outcomes[queue] = await _migrate_one(connection, queue)
    return outcomes


async def _connect(url: str) -> AbstractConnection:
    error: Exception = ValueError("no node URL")
    for node in parse_node_urls(url):
        try:
            return await aio_pika.connect(node, timeout=5)
        except Exception as exc:
            error = exc
    raise error


async def _migrate_one(connection: AbstractConnection, name: str) -> str:
    try:
        async with await connection.channel() as probe:
            found = await probe.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return "absent"
    try:
        async with await connection.channel() as probe:
            await probe.declare_queue(name, durable=True, arguments=QUORUM)
        return "quorum already"
    except aiormq.exceptions.ChannelPreconditionFailed:
        pass
    consumers = found.declaration_result.consumer_count
    if consumers:
        return f"refused: {consumers} consumer(s) on it; stop them first"
    async with await connection.channel(publisher_confirms=True) as channel:
        temporary = f"{name}.migrating"
        await channel.declare_queue(temporary, durable=True, arguments=QUORUM)
        moved = await _empty_into(channel, name, temporary)
        await channel.queue_delete(name, if_unused=True, if_empty=True)
    # A new channel: RabbitMQ 3.10's channel keeps the deleted queue's classic type under its
    # name, and fails (INTERNAL_ERROR) publishing to the quorum queue declared in its place.
    async with await connection.channel(publisher_confirms=True) as channel:
        await channel.declare_queue(name, durable=True, arguments=QUORUM)
        await _move(channel, temporary, name)
        await channel.queue_delete(temporary)  # no one else uses it; quorum: no if-unused
    return f"migrated to a quorum queue ({moved} message(s) moved)"


async def _empty_into(channel: AbstractChannel, source: str, target: str) -> int:
    moved = 0
    for _ in range(MOVE_ROUNDS):
        moved += await _move(channel, source, target)
        queue = await channel.declare_queue(source, passive=True)
        if not queue.declaration_result.message_count:
            return moved
    raise RuntimeError(f"{source} kept filling up; stop its senders for a moment")


async def _move(channel: AbstractChannel, source: str, target: str) -> int:
    """Every message of ``source`` to ``target`` in order, each confirmed, then acknowledged."""
    queue = await channel.get_queue(source, ensure=False)
    moved = 0
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        await channel.default_exchange.publish(_copy(message), target)
        await message.ack()
        moved += 1
    return moved


BROKER_HEADERS = ("x-delivery-count",)
"""Headers a quorum queue adds on delivery: not the sender's, and RabbitMQ 3.10 fails the
channel (INTERNAL_ERROR) on a message published to a quorum queue with one."""


def _copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers={k: v for k, v in message.headers.items() if k not in BROKER_HEADERS},
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--queue",
        action="append",
        help="a queue's name without the namespace (repeatable); default: every work queue",
    )
    args = parser.parse_args(argv)
    settings = Settings()
    if not settings.rabbitmq_url:
        print("CALLMESH_RABBITMQ_URL is not set", file=sys.stderr)
        return 2
    bases = args.queue or WORK_QUEUES
    names = [name for base in bases for name in (base, f"{base}.dead")]
    outcomes = asyncio.run(migrate(settings.rabbitmq_url, settings.namespace, names))
    for queue, outcome in outcomes.items():
        print(f"{queue}: {outcome}")
    return 1 if any(outcome.startswith("refused") for outcome in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
