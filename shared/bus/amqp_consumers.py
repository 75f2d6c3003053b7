"""Listeners on a link: a worker per queue, handlers run, work dead-lettered with its reason.

Each listener gets its own channel and a buffer its worker drains one message at
a time, acknowledging after the handler; a work handler's reply goes back to
the sender, and its refusal goes to the queue's dead-letter queue with the
reason in the headers (`shared.bus.base.dead_headers`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from shared.bus.amqp_link import PERSISTENT, EventListener, Link, WorkListener
from shared.bus.base import (
    Bus,
    WorkMessage,
    dead_headers,
    describe,
    run_event_handler,
    run_work_handler,
)

log = logging.getLogger("callmesh.bus")
Handle = Callable[[AbstractIncomingMessage], Awaitable[bool]]


async def attach(bus: Bus, link: Link, listener: EventListener | WorkListener) -> None:
    """Open ``listener``'s channel and queue on ``link`` and start its worker."""
    channel = await link.connection.channel(publisher_confirms=False)
    queue: AbstractQueue
    if isinstance(listener, WorkListener):
        await channel.set_qos(prefetch_count=listener.prefetch)
        queue = await channel.declare_queue(bus.queue_name(listener.name), durable=True)
        for pattern in listener.events:
            await queue.bind(bus.exchange_name, pattern)
        handle = _work_handle(bus, link, listener)
    else:
        await channel.set_qos(prefetch_count=64)
        if listener.group is None:
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        else:
            queue = await channel.declare_queue(bus.queue_name(listener.group), durable=True)
        for pattern in listener.patterns:
            await queue.bind(bus.exchange_name, pattern)
        handle = _event_handle(listener, queue.name)
    buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
    await queue.consume(buffer.put)
    channel.close_callbacks.add(link.watch)
    link.buffers.append(buffer)
    worker = asyncio.create_task(_work(bus.stream, link, buffer, handle))
    link.workers.add(worker)


async def _work(
    stream: str, link: Link, buffer: asyncio.Queue[AbstractIncomingMessage | None], handle: Handle
) -> None:
    """Handle one message at a time until the link is lost; ack what the handler settled."""
    while (message := await buffer.get()) is not None and not link.stopping:
        try:
            if await handle(message):
                await message.ack()
        except Exception as exc:
            log.warning(
                "bus %s: message on %s left unacknowledged (redelivered later): %s",
                stream,
                message.routing_key,
                describe(exc),
            )


def _event_handle(subscription: EventListener, queue: str) -> Handle:
    async def handle(message: AbstractIncomingMessage) -> bool:
        await run_event_handler(subscription.handler, message.body, queue)
        return True

    return handle


def _work_handle(bus: Bus, link: Link, consumer: WorkListener) -> Handle:
    queue_name, dead_name = bus.queue_name(consumer.name), bus.dead_queue_name(consumer.name)

    async def handle(message: AbstractIncomingMessage) -> bool:
        work = WorkMessage(
            body=message.body,
            headers=dict(message.headers or {}),
            reply_to=message.reply_to,
            correlation_id=message.correlation_id,
            redelivered=bool(message.redelivered),
        )
        outcome = await run_work_handler(consumer.handler, work, queue_name)
        if outcome.requeue:
            await message.nack(requeue=True)
            return False
        exchange = link.publisher.default_exchange
        if outcome.reply is not None and work.reply_to:
            reply = aio_pika.Message(outcome.reply, correlation_id=work.correlation_id)
            await link.replier.default_exchange.publish(reply, work.reply_to, mandatory=False)
        if outcome.dead_reason is not None:
            dead = aio_pika.Message(
                message.body,
                headers=dead_headers(work.headers, outcome.dead_reason),
                content_type=message.content_type,
                correlation_id=work.correlation_id,
                reply_to=work.reply_to,
                message_id=message.message_id,
                delivery_mode=PERSISTENT,
            )
            await exchange.publish(dead, dead_name, mandatory=False)
        return True

    return handle
