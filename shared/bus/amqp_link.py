"""One RabbitMQ connection and everything opened on it, and what the bus replays on it.

`AmqpBus` keeps its topology (queues, listeners) as records it replays on every
new connection, and throws a :class:`Link` away as a whole when any part of it
breaks; the records and the link are here, the supervision in `shared.bus.amqp`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
)

from shared.bus.base import BatchHandler, EventHandler, describe

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
PERSISTENT = aio_pika.DeliveryMode.PERSISTENT


@dataclass(eq=False)
class EventListener:
    """A subscription to replay: event patterns, its handler, its shared queue's group if any."""

    patterns: tuple[str, ...]
    handler: EventHandler
    group: str | None


@dataclass(eq=False)
class WorkListener:
    """A work-queue consumer to replay: the queue's name, its batch handler, its batch size
    and prefetch, and the event patterns bound to the queue (if any)."""

    name: str
    handler: BatchHandler
    max_batch: int
    prefetch: int
    events: tuple[str, ...] = ()


class Link:
    """One live connection and everything opened on it.

    Any failure of the connection or of one of its channels marks the whole link
    lost; the supervisor then builds a fresh one. Workers stop after the message
    in hand, whose ack then fails and which the broker redelivers.
    """

    def __init__(self, connection: AbstractConnection) -> None:
        self.connection = connection
        self.lost = asyncio.Event()
        self.stopping = False
        self.reason = ""
        self.publisher: AbstractChannel
        self.exchange: AbstractExchange
        self.requester: AbstractChannel
        self.replier: AbstractChannel
        self.buffers: list[asyncio.Queue[Any]] = []
        """The listeners' buffers (of their messages, ``None`` to stop)."""
        self.workers: set[asyncio.Task[None]] = set()

    def watch(self, sender: Any, exc: BaseException | None = None) -> None:
        """Close callback of the connection and of every channel."""
        self.lose(describe(exc) if exc is not None else f"{type(sender).__name__} closed")

    def lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.reason = reason
        self.lost.set()
        self.stop_workers()

    def stop_workers(self) -> None:
        """Workers finish the message in hand and take no other."""
        if not self.stopping:
            self.stopping = True
            for buffer in self.buffers:
                buffer.put_nowait(None)
