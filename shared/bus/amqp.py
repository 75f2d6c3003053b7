"""The bus on RabbitMQ (aio-pika), surviving broker restarts and cut connections.

Why its own reconnect loop and not ``connect_robust``: the bus has to know
exactly when the connection is down (``connected`` feeds ``/readyz``), has to
call the reconnect listeners once everything is back, and must recreate the
private subscriber queues with their bindings before it says so. Keeping the
topology as a list this module replays on every new connection makes all of
that explicit: a :class:`Link` is one connection with everything opened on
it, thrown away as a whole when any part of it breaks.

The link and the topology records are in `shared.bus.amqp_link`, the
listeners' workers and dead-lettering in `shared.bus.amqp_consumers`, the
requests waiting for their reply in `shared.bus.amqp_replies`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import AbstractChannel

from shared.bus.amqp_consumers import attach
from shared.bus.amqp_link import (
    DIRECT_REPLY_TO,
    PERSISTENT,
    EventListener,
    Link,
    Nodes,
    WorkListener,
    durable_queue,
)
from shared.bus.amqp_replies import PendingReplies
from shared.bus.base import BatchHandler, Bus, BusUnavailable, Envelope, EventHandler, describe
from shared.bus.nodes import without_credentials
from shared.contracts.event import Event

log = logging.getLogger("callmesh.bus")
# The bus reports a lost connection itself, in one line; aiormq would add an
# error and a traceback for the same event.
logging.getLogger("aiormq").setLevel(logging.CRITICAL)

T = TypeVar("T")


class AmqpBus(Bus):
    """The bus over RabbitMQ at ``url`` (one node's AMQP URL, or a cluster's: see `Nodes`).

    ``wait`` bounds how long an operation waits for a lost connection to come
    back before raising :class:`BusUnavailable`; ``start_timeout`` bounds the
    first connection (the broker may still be starting beside us).
    """

    def __init__(
        self,
        url: str,
        namespace: str,
        service: str,
        instance: str,
        *,
        wait: float = 5.0,
        start_timeout: float = 30.0,
        backoff: tuple[float, float] = (0.1, 5.0),
    ) -> None:
        super().__init__(namespace, service, instance)
        self.nodes = Nodes(url)
        self.wait = wait
        self.start_timeout = start_timeout
        self.backoff = backoff
        self.connection_name = f"callmesh {namespace} {self.stream}"
        self._queues: list[str] = []
        self._listeners: list[EventListener | WorkListener] = []
        self._link: Link | None = None
        self._links_changed = asyncio.Condition()
        self._topology_lock = asyncio.Lock()
        self._replies = PendingReplies()
        self._supervisor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._last_failure = ""  # why the last try to connect failed, for BusUnavailable

    @property
    def connected(self) -> bool:
        return self._link is not None and not self._link.lost.is_set()

    @property
    def node(self) -> str | None:
        """``host:port`` of the node the live connection is on (None while there is none)."""
        return self._link.node if self._link is not None and self.connected else None

    # -- life cycle ---------------------------------------------------------

    async def start(self) -> None:
        if self._supervisor is not None:
            return
        self._supervisor = asyncio.create_task(self._supervise())
        try:
            await self._current_link(self.start_timeout)
        except BusUnavailable:
            await self.close()
            raise

    async def close(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        link = self._link
        if link is not None:
            await self._drop(link, "the bus is closing", graceful=True)
            self._link = None
        for task in tuple(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _supervise(self) -> None:
        """Connect, replay the topology, wait for the loss, again; with backoff between tries.

        Until `close` (or a `start` after it) replaces it: asked, not only cancelled, as
        Python 3.11's `wait_for` (in aio-pika's connecting) can lose a cancel (see `_drop`)."""
        first, failures = True, 0
        delay = self.backoff[0]
        while self._supervisor is asyncio.current_task():
            try:
                link = await self._open()
            except Exception as exc:
                failures, self._last_failure = failures + 1, without_credentials(describe(exc))
                if failures == 1:
                    log.warning(
                        "bus %s: cannot reach RabbitMQ: %s", self.stream, self._last_failure
                    )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self.backoff[1])
                continue
            if not first:
                log.info("bus %s: reconnected to RabbitMQ", self.stream)
                self._spawn(self._notify_reconnect())
            first, failures, delay, self._last_failure = False, 0, self.backoff[0], ""
            if self._supervisor is not asyncio.current_task():
                return  # `close` drops the link
            await link.lost.wait()
            self.nodes.move_on()
            async with self._links_changed:
                self._link = None
            log.warning("bus %s: lost RabbitMQ connection: %s", self.stream, link.reason)
            await self._drop(link, link.reason, graceful=False)
            await asyncio.sleep(delay)

    async def _open(self) -> Link:
        connection = await self.nodes.connect(self.connection_name)
        link = Link(connection)
        link.node = self.nodes.address
        connection.close_callbacks.add(link.watch)
        try:  # a node that takes the connection and then stalls is not one to wait on
            async with asyncio.timeout(self.start_timeout), self._topology_lock:
                link.publisher = await self._channel(link, confirms=True)
                link.exchange = await link.publisher.declare_exchange(
                    self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
                # Requests and replies go without publisher confirms: the reply (or the
                # request's timeout) is the acknowledgement, and a confirm per message
                # would double the broker's round trips on every request/reply.
                link.requester = await self._channel(link, confirms=False)
                link.replier = await self._channel(link, confirms=False)
                replies = await link.requester.get_queue(DIRECT_REPLY_TO, ensure=False)
                await replies.consume(self._replies.on_reply, no_ack=True)
                for name in self._queues:
                    await self._declare(link, name)
                for listener in self._listeners:
                    await attach(self, link, listener)
                async with self._links_changed:
                    self._link = link
                    self._links_changed.notify_all()
        except BaseException:
            await self._drop(link, "setup failed", graceful=False)
            raise
        return link

    async def _drop(self, link: Link, reason: str, *, graceful: bool) -> None:
        """Close what is left of ``link``.

        Requests waiting on it will never get their reply, so they fail now.
        ``graceful`` lets the handlers in progress finish first (bounded by
        ``wait``), still able to publish and acknowledge; after a loss there is
        nothing left to acknowledge on, and the broker redelivers.
        """
        if graceful and link.workers:
            link.stop_workers()
            await asyncio.wait(link.workers, timeout=self.wait)
        link.lose(reason)
        self._replies.fail_on(link, reason)
        # Not `wait_for`: on Python 3.11 it can lose a cancel landing as the close ends
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.wait):
                await link.connection.close()

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _channel(self, link: Link, *, confirms: bool) -> AbstractChannel:
        channel = await link.connection.channel(publisher_confirms=confirms)
        channel.close_callbacks.add(link.watch)
        return channel

    async def _current_link(self, wait: float) -> Link:
        """The live link, waiting up to ``wait`` seconds for one."""
        if self._supervisor is None and self._link is None:
            raise BusUnavailable(f"bus {self.stream} is not started")
        try:
            async with asyncio.timeout(wait), self._links_changed:
                await self._links_changed.wait_for(lambda: self.connected)
        except TimeoutError:
            why = f"; last try: {self._last_failure}" if self._last_failure else ""
            message = f"RabbitMQ unreachable for {wait:g}s (bus {self.stream}){why}"
            raise BusUnavailable(message) from None
        assert self._link is not None
        return self._link

    async def _on_link(self, action: Callable[[Link], Awaitable[T]]) -> T:
        """Run ``action`` on the live link; if the link breaks under it, retry on the next one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            link = await self._current_link(max(deadline - loop.time(), 0.01))
            try:
                return await action(link)
            except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                link.lose(describe(exc))
                if loop.time() >= deadline:
                    raise BusUnavailable(f"RabbitMQ failed: {describe(exc)}") from None

    # -- topology -----------------------------------------------------------

    async def _record(
        self,
        add: Callable[[], None],
        forget: Callable[[], None],
        apply: Callable[[Link], Awaitable[None]],
    ) -> None:
        """Record a piece of topology and apply it to the live link.

        Recording and applying happen under the topology lock, so a link being
        opened meanwhile either replays it or comes up before it is applied,
        never both. If applying fails while the link stays up, the request
        itself is wrong (say, a queue declared with other arguments): forget it
        and raise. If the link broke meanwhile, the next link replays it.
        """
        await self._current_link(self.wait)
        async with self._topology_lock:
            add()
            link = self._link
            if link is None or link.lost.is_set():
                return
            try:
                await apply(link)
            except Exception:
                await asyncio.sleep(0)  # let a close callback mark the link lost first
                if not link.lost.is_set():
                    forget()
                    raise

    async def declare_queue(self, name: str) -> None:
        if name in self._queues:
            return
        await self._record(
            lambda: self._queues.append(name),
            lambda: self._queues.remove(name),
            lambda link: self._declare(link, name),
        )

    async def _declare(self, link: Link, name: str) -> None:
        await durable_queue(link, link.publisher, self.queue_name(name))
        await durable_queue(link, link.publisher, self.dead_queue_name(name))

    async def subscribe(
        self, patterns: Sequence[str], handler: EventHandler, *, group: str | None = None
    ) -> None:
        await self._listen(EventListener(tuple(patterns), handler, group))

    async def consume_batches(
        self,
        name: str,
        handler: BatchHandler,
        *,
        max_batch: int = 256,
        prefetch: int = 512,
        events: Sequence[str] = (),
    ) -> None:
        await self.declare_queue(name)
        await self._listen(WorkListener(name, handler, max_batch, prefetch, tuple(events)))

    async def _listen(self, listener: EventListener | WorkListener) -> None:
        await self._record(
            lambda: self._listeners.append(listener),
            lambda: self._listeners.remove(listener),
            lambda link: attach(self, link, listener),
        )

    # -- publishing ---------------------------------------------------------

    async def publish(self, event: Event, routing_key: str | None = None) -> Envelope:
        envelope = self.envelope(event, routing_key)
        await self._on_link(lambda link: link.publish_all((envelope,)))
        return envelope

    async def publish_many(self, events: Sequence[Event]) -> list[Envelope]:
        envelopes = [self.envelope(event) for event in events]
        if envelopes:
            await self._on_link(lambda link: link.publish_all(envelopes))
        return envelopes

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
        await self.declare_queue(name)
        message = aio_pika.Message(
            body,
            headers=dict(headers or {}),
            reply_to=reply_to,
            correlation_id=correlation_id,
            message_id=message_id,
            delivery_mode=PERSISTENT,
        )

        async def send(link: Link) -> None:
            await link.publisher.default_exchange.publish(
                message, self.queue_name(name), mandatory=False
            )

        await self._on_link(send)

    async def request(
        self,
        name: str,
        body: bytes,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> bytes:
        await self.declare_queue(name)
        correlation_id = uuid.uuid4().hex
        request = self._replies.expect(correlation_id)
        # Transient, expiring with its timeout: nobody waits for it then (docs/bus.md).
        message = aio_pika.Message(body, reply_to=DIRECT_REPLY_TO, correlation_id=correlation_id)
        message.expiration = timeout

        async def send(link: Link) -> None:
            # Direct reply-to: the request must leave on the channel that consumes the replies.
            request.link = link
            await link.requester.default_exchange.publish(
                message, self.queue_name(name), mandatory=False
            )

        try:
            async with asyncio.timeout(timeout):
                await self._on_link(send)
                return await request.future
        except TimeoutError:
            raise TimeoutError(
                f"no reply from {self.queue_name(name)} within {timeout:g}s"
            ) from None
        finally:
            self._replies.forget(correlation_id)

    # -- tests --------------------------------------------------------------

    async def delete_topology(self) -> None:
        """Delete the exchange and the durable queues this bus declared (tests clean up with it)."""
        names = [self.queue_name(name) for name in self._queues]
        names += [self.dead_queue_name(name) for name in self._queues]
        names += [
            self.queue_name(listener.group)
            for listener in self._listeners
            if isinstance(listener, EventListener) and listener.group is not None
        ]
        connection = await self.nodes.connect(self.connection_name)
        async with asyncio.timeout(60), connection:  # a quorum queue's delete waits on a majority
            channel = await connection.channel()
            for name in dict.fromkeys(names):
                await channel.queue_delete(name)
            await channel.exchange_delete(self.exchange_name)
