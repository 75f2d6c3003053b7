"""One RabbitMQ connection and everything opened on it, and what the bus replays on it.

`AmqpBus` keeps its topology (queues, listeners) as records it replays on every
new connection, and throws a :class:`Link` away as a whole when any part of it
breaks; the records and the link are here, the supervision in `shared.bus.amqp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
)
from aiormq.abc import FieldTable

from shared.bus.base import BatchHandler, Envelope, EventHandler, describe
from shared.bus.nodes import node_address, parse_node_urls

log = logging.getLogger("callmesh.bus")

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
PERSISTENT = aio_pika.DeliveryMode.PERSISTENT
QUORUM: FieldTable = {"x-queue-type": "quorum"}
"""Every durable queue's type: replicated on a majority of a cluster's nodes (Raft), so it
lives on when a node dies and a confirm means the message is on a majority."""


NODE_CONNECT_TIMEOUT = 2.0
"""Seconds one node may take to accept a connection before the next is tried (a dead node
on a live host refuses at once; a host that is gone does not answer at all)."""


class Nodes:
    """A cluster's node URLs (``CALLMESH_RABBITMQ_URL``, comma-separated) and the one to try
    first: a random one at the start, so clients spread over the cluster, and after a loss
    the one after the lost connection's node, so a client moves on when its node dies."""

    def __init__(self, url: str) -> None:
        self.urls = parse_node_urls(url)
        self._next = random.randrange(len(self.urls))

    @property
    def address(self) -> str:
        """``host:port`` of the node last connected to (or to be tried first)."""
        return node_address(self.urls[self._next])

    def move_on(self) -> None:
        self._next = (self._next + 1) % len(self.urls)

    async def connect(self, name: str) -> AbstractConnection:
        """A connection to the first node that answers, each tried once from the next on."""
        error: Exception = ConnectionError("no RabbitMQ node URL")
        for _ in self.urls:
            try:
                return await aio_pika.connect(
                    self.urls[self._next],
                    client_properties={"connection_name": name},
                    timeout=NODE_CONNECT_TIMEOUT,
                )
            except Exception as exc:
                error = exc
                self.move_on()
        raise error


async def durable_queue(link: Link, channel: AbstractChannel, name: str) -> AbstractQueue:
    """Declare durable queue ``name`` as a quorum queue and return it on ``channel``.

    A deployment from before quorum queues has ``name`` as a classic queue, and
    RabbitMQ refuses to redeclare it with another type (PRECONDITION_FAILED,
    closing the channel). The declaration is tried on a channel of its own, so
    that refusal costs only that channel: the classic queue is then kept and used
    as it is, with one warning line until it is migrated
    (``python -m deploy.quorum_queues``; docs/bus.md "Quorum queues").
    """
    probe = await link.connection.channel(publisher_confirms=False)
    try:
        await probe.declare_queue(name, durable=True, arguments=QUORUM)
    except aiormq.exceptions.ChannelPreconditionFailed:
        log.warning(
            "queue %s is a classic queue (from before quorum queues): used as it is, not "
            "replicated; migrate it with python -m deploy.quorum_queues",
            name,
        )
    finally:
        with contextlib.suppress(Exception):
            await probe.close()
    return await channel.declare_queue(name, passive=True)


def event_properties(envelope: Envelope) -> aiormq.spec.Basic.Properties:
    """The properties of an event's persistent message, named after its stream and sequence
    number: the bytes aio-pika's ``Message`` puts on the wire, without the message.

    An aio-pika ``Message`` costs ~40 µs to build and these ~1 µs: a publisher of
    one message per event (accounting's completions, thousands a second) pays
    it per message.
    """
    return aiormq.spec.Basic.Properties(
        content_type="application/json",
        delivery_mode=PERSISTENT,
        message_id=f"{envelope.stream}#{envelope.seq}",
        headers={},
        priority=0,
    )


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
        self.node = ""
        """``host:port`` of the node the connection is on."""
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

    async def publish_all(self, envelopes: Sequence[Envelope]) -> None:
        """Publish events to the events exchange, confirmed together.

        Every message is written at once, then every confirm awaited together
        (the broker confirms many with one frame).  Why not aio-pika's publish: it
        holds the channel's lock until the writer task has written its frames, a
        turn or two of the loop, so concurrent publishers went one at a time.  An
        edge worker's loop at 2000 calls/s turns every 20 ms or so, and its four
        senders then published a handful of messages a second between them: its
        call events piled up (docs/benchmarks.md, "The publisher under load").
        """
        # aiormq's own channel: its abstract interface does not declare ``wait``.
        channel = cast(aiormq.Channel, await self.publisher.get_underlay_channel())
        publishes = [
            channel.basic_publish(
                envelope.to_bytes(),
                exchange=self.exchange.name,
                routing_key=envelope.type,
                properties=event_properties(envelope),
                wait=False,
            )
            for envelope in envelopes
        ]
        if len(publishes) == 1:  # in this task: a task of its own waits a turn to start
            await publishes[0]
            return
        confirms = await asyncio.gather(*publishes, return_exceptions=True)
        for confirm in confirms:
            if isinstance(confirm, BaseException):
                raise confirm

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
