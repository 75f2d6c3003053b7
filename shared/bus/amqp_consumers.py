"""Listeners on a link: a worker per queue, handlers run, work dead-lettered with its reason.

Each listener gets its own channel and a buffer its worker drains one message
(an event listener) or one batch (a work consumer: what is waiting, up to its
``max_batch``) at a time, settling after the handler; a work handler's reply
goes back to the sender, its refusal goes to the queue's dead-letter queue with
the reason in the headers (`shared.bus.base.dead_headers`), and the rest of a
batch is acknowledged with one ``multiple`` ack.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from aiormq.abc import DeliveredMessage

from shared.bus.amqp_link import PERSISTENT, EventListener, Link, WorkListener, durable_queue
from shared.bus.base import (
    Bus,
    Outcome,
    WorkMessage,
    dead_headers,
    describe,
    run_batch_handler,
    run_event_handler,
)

log = logging.getLogger("callmesh.bus")


class Delivery(Protocol):
    @property
    def routing_key(self) -> str | None: ...


M = TypeVar("M", bound=Delivery)


async def attach(bus: Bus, link: Link, listener: EventListener | WorkListener) -> None:
    """Open ``listener``'s channel and queue on ``link`` and start its worker."""
    channel = await link.connection.channel(publisher_confirms=False)
    channel.close_callbacks.add(link.watch)
    queue: AbstractQueue
    worker: Awaitable[None]
    if isinstance(listener, WorkListener):
        await channel.set_qos(prefetch_count=listener.prefetch)
        queue = await durable_queue(link, channel, bus.queue_name(listener.name))
        for pattern in listener.events:
            await queue.bind(bus.exchange_name, pattern)
        # Work messages are taken on the protocol's own channel: aio-pika's message
        # objects and its extra task per delivery cost more than the rest of a
        # batch's bus work, and the batch is settled by delivery tag anyway.
        underlay = await channel.get_underlay_channel()
        deliveries: asyncio.Queue[DeliveredMessage | None] = asyncio.Queue()

        async def take(message: DeliveredMessage) -> None:
            deliveries.put_nowait(message)

        await underlay.basic_consume(queue.name, take)
        link.buffers.append(deliveries)
        settle = _work_settle(bus, link, listener)
        worker = _work(bus.stream, link, deliveries, settle, listener.max_batch)
    else:
        await channel.set_qos(prefetch_count=64)
        if listener.group is None:
            queue = await channel.declare_queue("", exclusive=True, auto_delete=True)
        else:
            queue = await durable_queue(link, channel, bus.queue_name(listener.group))
        for pattern in listener.patterns:
            await queue.bind(bus.exchange_name, pattern)
        buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        await queue.consume(buffer.put)
        link.buffers.append(buffer)
        worker = _work(bus.stream, link, buffer, _event_settle(listener, queue.name), 1)
    link.workers.add(asyncio.ensure_future(worker))


async def _work(
    stream: str,
    link: Link,
    buffer: asyncio.Queue[M | None],
    settle: Callable[[list[M]], Awaitable[None]],
    max_batch: int,
) -> None:
    """Settle one batch at a time (what waits, up to ``max_batch``) until the link is lost."""
    last = False
    while not last and (message := await buffer.get()) is not None and not link.stopping:
        batch = [message]
        while len(batch) < max_batch and not buffer.empty():
            more = buffer.get_nowait()
            if more is None:
                last = True
                break
            batch.append(more)
        try:
            await settle(batch)
        except Exception as exc:
            log.warning(
                "bus %s: %d message(s) on %s left unacknowledged (redelivered later): %s",
                stream,
                len(batch),
                batch[0].routing_key,
                describe(exc),
            )


def _event_settle(
    subscription: EventListener, queue: str
) -> Callable[[list[AbstractIncomingMessage]], Awaitable[None]]:
    async def settle(batch: list[AbstractIncomingMessage]) -> None:
        for message in batch:
            await run_event_handler(subscription.handler, message.body, queue)
            await message.ack()

    return settle


def _work_settle(
    bus: Bus, link: Link, consumer: WorkListener
) -> Callable[[list[DeliveredMessage]], Awaitable[None]]:
    queue_name, dead_name = bus.queue_name(consumer.name), bus.dead_queue_name(consumer.name)

    async def settle(batch: list[DeliveredMessage]) -> None:
        works = [
            WorkMessage(
                body=message.body,
                headers=dict(message.header.properties.headers or {}),
                reply_to=message.header.properties.reply_to,
                correlation_id=message.header.properties.correlation_id,
                redelivered=bool(message.redelivered),
                message_id=message.header.properties.message_id,
            )
            for message in batch
        ]
        outcomes = await run_batch_handler(consumer.handler, works, queue_name)
        done: int | None = None
        for message, work, outcome in zip(batch, works, outcomes, strict=True):
            tag = message.delivery_tag
            assert tag is not None  # a delivery on a consuming channel always has one
            if outcome.requeue:
                await message.channel.basic_reject(tag, requeue=True)
            else:
                await _reply_or_bury(link, message, work, outcome, dead_name)
                done = tag
        if done is not None:
            # Every earlier delivery of this channel is settled by now (one batch at a
            # time, in delivery order), so this acknowledges exactly the batch's others.
            await batch[0].channel.basic_ack(done, multiple=len(batch) > 1)

    return settle


async def _reply_or_bury(
    link: Link,
    message: DeliveredMessage,
    work: WorkMessage,
    outcome: Outcome,
    dead_name: str,
) -> None:
    """Send a work message's reply, and move it to the dead queue if it was refused."""
    if outcome.reply is not None and work.reply_to:
        reply = aio_pika.Message(outcome.reply, correlation_id=work.correlation_id)
        await link.replier.default_exchange.publish(reply, work.reply_to, mandatory=False)
    if outcome.dead_reason is not None:
        properties = message.header.properties
        dead = aio_pika.Message(
            message.body,
            headers=dead_headers(work.headers, outcome.dead_reason),
            content_type=properties.content_type,
            correlation_id=work.correlation_id,
            reply_to=work.reply_to,
            message_id=properties.message_id,
            delivery_mode=PERSISTENT,
        )
        await link.publisher.default_exchange.publish(dead, dead_name, mandatory=False)
