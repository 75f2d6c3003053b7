"""The in-process bus of the all-in-one process, behaving like the broker.

Services must not be able to tell it from :class:`~shared.bus.amqp.AmqpBus`:
routing uses RabbitMQ's topic rules, a group shares one queue (round-robin),
work queues dead-letter with the reason header, and delivery is asynchronous
(handlers run in consumer tasks, never inside ``publish``), so that code which
only works because a handler ran synchronously fails here too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from shared.bus.base import (
    BatchHandler,
    Bus,
    BusUnavailable,
    Envelope,
    EventHandler,
    WorkMessage,
    dead_headers,
    run_batch_handler,
    run_event_handler,
)
from shared.bus.topic import topic_matches
from shared.contracts.event import Event

Handle = Callable[[list[WorkMessage]], Awaitable[None]]


class _Consumer:
    """One consumer task: takes its share of a queue, one batch (what waits) at a time."""

    def __init__(self, handle: Handle, max_batch: int = 1) -> None:
        self.buffer: asyncio.Queue[WorkMessage | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run(handle, max_batch))

    async def _run(self, handle: Handle, max_batch: int) -> None:
        last = False
        while not last and (message := await self.buffer.get()) is not None:
            batch = [message]
            while len(batch) < max_batch and not self.buffer.empty():
                more = self.buffer.get_nowait()
                if more is None:
                    last = True
                    break
                batch.append(more)
            await handle(batch)

    def take_back(self) -> list[WorkMessage]:
        """Stop after the message in hand; return the ones it had not started."""
        left: list[WorkMessage] = []
        while not self.buffer.empty():
            message = self.buffer.get_nowait()
            if message is not None:
                left.append(message)
        self.buffer.put_nowait(None)
        return left


class _Queue:
    """Messages wait here until a consumer exists, then go to consumers in turn."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._backlog: deque[WorkMessage] = deque()
        self._consumers: list[_Consumer] = []
        self._next = 0

    def put(self, message: WorkMessage) -> None:
        expires_at = message.expires_at
        if expires_at is not None and expires_at <= asyncio.get_running_loop().time():
            return  # nobody waits for it any more: dropped unread, as RabbitMQ does
        if not self._consumers:
            self._backlog.append(message)
            return
        self._next = (self._next + 1) % len(self._consumers)
        self._consumers[self._next].buffer.put_nowait(message)

    def attach(self, consumer: _Consumer) -> None:
        self._consumers.append(consumer)
        while self._backlog:
            self.put(self._backlog.popleft())

    def detach(self, consumer: _Consumer) -> None:
        """Remove ``consumer``; what it had not started goes back to the queue, in order."""
        self._consumers.remove(consumer)
        self._backlog.extendleft(reversed(consumer.take_back()))
        while self._consumers and self._backlog:
            self.put(self._backlog.popleft())

    def __len__(self) -> int:
        return len(self._backlog)


class MemoryBroker:
    """The exchange and queues shared by every service of one process."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._bindings: dict[str, list[tuple[str, _Queue]]] = {}

    def declare(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue(name)
        return queue

    def delete(self, name: str) -> None:
        queue = self._queues.pop(name, None)
        for exchange, bindings in self._bindings.items():
            self._bindings[exchange] = [item for item in bindings if item[1] is not queue]

    def bind(self, exchange: str, pattern: str, queue: _Queue) -> None:
        bindings = self._bindings.setdefault(exchange, [])
        if (pattern, queue) not in bindings:
            bindings.append((pattern, queue))

    def route(self, exchange: str, routing_key: str, message: WorkMessage) -> None:
        """One copy to every queue with a matching binding, however many of its patterns match."""
        matched: dict[int, _Queue] = {}
        for pattern, queue in self._bindings.get(exchange, ()):
            if topic_matches(pattern, routing_key):
                matched.setdefault(id(queue), queue)
        for queue in matched.values():
            queue.put(message)

    def deliver(self, queue_name: str, message: WorkMessage) -> None:
        """Like the default exchange: a message for a queue that does not exist is dropped."""
        queue = self._queues.get(queue_name)
        if queue is not None:
            queue.put(message)

    def depth(self, queue_name: str) -> int:
        """Messages waiting for a consumer (tests and diagnostics)."""
        queue = self._queues.get(queue_name)
        return 0 if queue is None else len(queue)


class MemoryBus(Bus):
    """One service's view of a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker, namespace: str, service: str, instance: str) -> None:
        super().__init__(namespace, service, instance)
        self.broker = broker
        self._running = False
        self._consumers: list[tuple[_Queue, _Consumer]] = []
        self._private: list[str] = []
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._reply_to = self.queue_name(f"reply.{uuid.uuid4().hex}")

    @property
    def connected(self) -> bool:
        return self._running

    async def start(self) -> None:
        self._running = True
        self._private.append(self._reply_to)
        self._attach(self.broker.declare(self._reply_to), self._on_reply)

    async def close(self) -> None:
        """Let the handlers in progress finish (they may still publish), then stop."""
        for queue, consumer in self._consumers:
            queue.detach(consumer)
        await asyncio.gather(*(consumer.task for _, consumer in self._consumers))
        self._consumers.clear()
        self._running = False
        for name in self._private:
            self.broker.delete(name)
        self._private.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(BusUnavailable("the bus was closed while waiting"))

    def _check_running(self) -> None:
        if not self._running:
            raise BusUnavailable(f"bus {self.stream} is not started")

    def _attach(self, queue: _Queue, handle: Handle, max_batch: int = 1) -> None:
        consumer = _Consumer(handle, max_batch)
        queue.attach(consumer)
        self._consumers.append((queue, consumer))

    async def publish(self, event: Event, routing_key: str | None = None) -> Envelope:
        self._check_running()
        envelope = self.envelope(event, routing_key)
        self.broker.route(self.exchange_name, envelope.type, WorkMessage(envelope.to_bytes()))
        return envelope

    async def subscribe(
        self, patterns: Sequence[str], handler: EventHandler, *, group: str | None = None
    ) -> None:
        self._check_running()
        if group is None:
            name = self.queue_name(f"subscriber.{uuid.uuid4().hex}")
            self._private.append(name)
        else:
            name = self.queue_name(group)
        queue = self.broker.declare(name)
        for pattern in patterns:
            self.broker.bind(self.exchange_name, pattern, queue)

        async def handle(batch: list[WorkMessage]) -> None:
            for message in batch:
                await run_event_handler(handler, message.body, name)

        self._attach(queue, handle)

    async def declare_queue(self, name: str) -> None:
        self.broker.declare(self.queue_name(name))
        self.broker.declare(self.dead_queue_name(name))

    async def send(
        self,
        name: str,
        body: bytes,
        *,
        headers: Mapping[str, Any] | None = None,
        reply_to: str | None = None,
        correlation_id: str | None = None,
        message_id: str | None = None,
    ) -> None:
        self._check_running()
        await self.declare_queue(name)
        message = WorkMessage(
            body, dict(headers or {}), reply_to, correlation_id, message_id=message_id
        )
        self.broker.deliver(self.queue_name(name), message)

    async def consume_batches(
        self,
        name: str,
        handler: BatchHandler,
        *,
        max_batch: int = 256,
        prefetch: int = 512,
        events: Sequence[str] = (),
    ) -> None:
        self._check_running()
        await self.declare_queue(name)
        queue_name, dead_name = self.queue_name(name), self.dead_queue_name(name)
        queue = self.broker.declare(queue_name)
        for pattern in events:
            self.broker.bind(self.exchange_name, pattern, queue)

        async def handle(batch: list[WorkMessage]) -> None:
            outcomes = await run_batch_handler(handler, batch, queue_name)
            for message, outcome in zip(batch, outcomes, strict=True):
                if outcome.requeue:
                    queue.put(replace(message, redelivered=True))
                    continue
                if outcome.reply is not None and message.reply_to:
                    reply = WorkMessage(outcome.reply, correlation_id=message.correlation_id)
                    self.broker.deliver(message.reply_to, reply)
                if outcome.dead_reason is not None:
                    headers = dead_headers(message.headers, outcome.dead_reason)
                    dead = WorkMessage(
                        message.body,
                        headers,
                        message.reply_to,
                        message.correlation_id,
                        message_id=message.message_id,
                    )
                    self.broker.deliver(dead_name, dead)

        self._attach(queue, handle, max_batch)

    async def request(
        self,
        name: str,
        body: bytes,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> bytes:
        self._check_running()
        correlation_id = uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._pending[correlation_id] = future
        try:
            await self.declare_queue(name)
            message = WorkMessage(
                body, {}, self._reply_to, correlation_id, expires_at=loop.time() + timeout
            )
            self.broker.deliver(self.queue_name(name), message)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise TimeoutError(
                f"no reply from {self.queue_name(name)} within {timeout:g}s"
            ) from None
        finally:
            self._pending.pop(correlation_id, None)

    async def _on_reply(self, batch: list[WorkMessage]) -> None:
        for message in batch:
            future = self._pending.get(message.correlation_id or "")
            if future is not None and not future.done():
                future.set_result(message.body)
