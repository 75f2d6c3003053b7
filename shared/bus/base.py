"""The bus interface and the envelope every event travels in.

Why an envelope: receivers need to know who said what, when, and whether they
missed something. ``stream`` names one publisher (service/instance) and ``seq``
counts its events without holes, so a receiver that sees ``seq`` jump knows it
lost events and resyncs from the store.
"""

from __future__ import annotations

import abc
import builtins
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict

from shared.contracts.event import Event
from shared.contracts.model_json import nested_json

E = TypeVar("E", bound="Event")

log = logging.getLogger("callmesh.bus")


class Envelope(BaseModel):
    """What goes over the wire for one event (JSON)."""

    model_config = ConfigDict(frozen=True)

    type: str
    schema_version: int
    service: str
    instance: str
    ts: float
    stream: str
    seq: int
    data: dict[str, Any]

    def payload(self, event_type: builtins.type[E]) -> E:
        """The typed payload; raises ``pydantic.ValidationError`` when it does not fit."""
        return event_type.model_validate(self.data)

    def to_bytes(self) -> bytes:
        """The JSON body; the same bytes as pydantic's serialiser, about five times faster.

        Every field is a JSON type, or in ``data`` a model whose fields are (what
        `Event.json_data` gives, see :meth:`Bus.envelope`): orjson writes such a model
        as its fields, and needs no pydantic to read.  What a publisher that sends one
        message per event (an accounting completion) pays per message.
        """
        return orjson.dumps(self.__dict__, default=nested_json)

    @classmethod
    def from_bytes(cls, body: bytes) -> Envelope:
        """Parse a received body; raises ``pydantic.ValidationError`` when it is not an envelope."""
        return cls.model_validate_json(body)


@dataclass(slots=True)
class WorkMessage:
    """One message taken from a work queue."""

    body: bytes
    headers: Mapping[str, Any] = field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    redelivered: bool = False
    message_id: str | None = None
    """The sender's id of the message: a consumer that must apply it once keys on it."""
    expires_at: float | None = None
    """In memory only (the loop's clock): a request not taken by then is dropped unread, as
    RabbitMQ drops one whose ``expiration`` has passed (`Bus.request`)."""


class DeadLetter(Exception):  # noqa: N818 - it names the outcome, not an error kind
    """Raised by a work handler: the message cannot be applied and goes to the dead queue.

    ``reason`` travels in the dead-lettered message's ``x-callmesh-reason`` header;
    ``reply`` (if set and the message asked for one) is sent back to the sender.
    """

    def __init__(self, reason: str, reply: bytes | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


class Requeue(Exception):  # noqa: N818 - it names the outcome, not an error kind
    """Raised by a work handler: the message cannot be applied NOW and stays on its queue.

    Neither acknowledged nor dead-lettered: the broker delivers it again later
    (to this consumer or another). For a handler whose own store is down while
    the service stops; a handler that raises it at once on every failure would
    spin on the same message.
    """


class BusUnavailable(ConnectionError):  # noqa: N818 - reads as the state it reports
    """The broker stayed unreachable for longer than the bus is willing to wait.

    Raised instead of hanging, so that an HTTP handler can answer 503 and a
    background task can retry later.
    """


EventHandler = Callable[[Envelope], Awaitable[None]]
WorkHandler = Callable[[WorkMessage], Awaitable[bytes | None]]
BatchHandler = Callable[[Sequence[WorkMessage]], Awaitable[Sequence["Outcome"]]]
ReconnectListener = Callable[[], Awaitable[None]]

REASON_HEADER = "x-callmesh-reason"


class Bus(abc.ABC):
    """Publish/subscribe of events, durable work queues, request/reply.

    Names given to the bus are short (``routing.commands``); the bus prefixes
    them with the namespace (``{ns}.routing.commands``), and events go to the
    topic exchange ``{ns}.events``.
    """

    def __init__(self, namespace: str, service: str, instance: str) -> None:
        self.namespace = namespace
        self.service = service
        self.instance = instance
        self._seq = 0
        self._reconnect_listeners: list[ReconnectListener] = []

    @property
    def exchange_name(self) -> str:
        return f"{self.namespace}.events"

    def queue_name(self, name: str) -> str:
        return f"{self.namespace}.{name}"

    def dead_queue_name(self, name: str) -> str:
        return f"{self.queue_name(name)}.dead"

    @property
    def stream(self) -> str:
        return f"{self.service}/{self.instance}"

    def envelope(self, event: Event, routing_key: str | None = None) -> Envelope:
        """Wrap an event with the next sequence number of this publisher's stream."""
        self._seq += 1
        return Envelope(
            type=routing_key or event.routing_key,
            schema_version=event.schema_version,
            service=self.service,
            instance=self.instance,
            ts=time.time(),
            stream=self.stream,
            seq=self._seq,
            data=event.json_data(),
        )

    def on_reconnect(self, listener: ReconnectListener) -> None:
        """Call ``listener`` after the connection was lost and is back (resync what was missed)."""
        self._reconnect_listeners.append(listener)

    async def _notify_reconnect(self) -> None:
        """Run every listener; one failing listener must not keep the others from resyncing."""
        for listener in self._reconnect_listeners:
            try:
                await listener()
            except Exception as exc:
                log.error("bus %s: reconnect listener failed: %s", self.stream, describe(exc))

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """Whether the bus can publish right now (for ``/readyz``)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and declare the exchange."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consumers and disconnect."""

    @abc.abstractmethod
    async def publish(self, event: Event, routing_key: str | None = None) -> Envelope:
        """Publish to ``{ns}.events``; ``routing_key`` overrides the event's own."""

    async def publish_many(self, events: Sequence[Event]) -> list[Envelope]:
        """:meth:`publish` each event; returns once the broker has taken every one.

        Why: a publisher that needs many events safely out before it moves on
        (acknowledging what they came from) should wait for the broker once for
        all of them, not once each.  Raises as :meth:`publish` does; some of the
        events may have gone out by then, so a caller that retries publishes
        those twice (at-least-once).
        """
        return [await self.publish(event) for event in events]

    @abc.abstractmethod
    async def subscribe(
        self, patterns: Sequence[str], handler: EventHandler, *, group: str | None = None
    ) -> None:
        """Deliver events whose routing key matches any pattern (``*`` one word, ``#`` any).

        The handler sees one event at a time, in queue order, so that ``seq`` gaps
        mean lost events and not reordering. A handler exception is logged and the
        event is dropped (events have no dead queue).

        Without ``group`` every subscriber gets every event (a private, transient
        queue). With ``group`` the subscribers of one group share a durable queue
        ``{ns}.{group}``: each event reaches one of them, and events published
        while they are all away wait for them.
        """

    @abc.abstractmethod
    async def declare_queue(self, name: str) -> None:
        """Declare durable work queue ``{ns}.{name}`` and its dead-letter queue."""

    @abc.abstractmethod
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
        """Put a persistent message on work queue ``{ns}.{name}`` (declared if needed).

        Declaring on send means a message is never dropped because its consumer
        has not started yet: it waits in the durable queue. It returns once the
        broker confirmed the message (on a cluster: stored on a majority), so a
        sender that gets an error sends again, with the same ``message_id`` for a
        consumer that applies a message once.
        """

    async def consume(
        self,
        name: str,
        handler: WorkHandler,
        *,
        prefetch: int = 64,
        events: Sequence[str] = (),
    ) -> None:
        """Consume work queue ``{ns}.{name}`` (declared if needed).

        ``events``, when given, binds the queue to those routing-key patterns of
        ``{ns}.events``: events then reach ``handler`` as work messages (the body
        is the envelope), acknowledged only once it returns, dead-lettered when
        it cannot apply them (a durable, exactly-settled event consumer).

        Messages reach ``handler`` one at a time, in queue order (commands must
        apply in the order they were sent); ``prefetch`` only sets how many wait
        in memory. The message is acknowledged after ``handler`` returns; its
        return value, if any, is sent to ``reply_to``. ``DeadLetter`` (or any other
        exception) moves the message to ``{ns}.{name}.dead`` with the reason in
        the ``x-callmesh-reason`` header, original body and headers kept; the
        consumer keeps going. ``Requeue`` leaves it on the queue for later.
        """
        queue = self.queue_name(name)

        async def one_at_a_time(messages: Sequence[WorkMessage]) -> list[Outcome]:
            return [await run_work_handler(handler, message, queue) for message in messages]

        await self.consume_batches(
            name, one_at_a_time, max_batch=1, prefetch=prefetch, events=events
        )

    @abc.abstractmethod
    async def consume_batches(
        self,
        name: str,
        handler: BatchHandler,
        *,
        max_batch: int = 256,
        prefetch: int = 512,
        events: Sequence[str] = (),
    ) -> None:
        """:meth:`consume`, the messages handed over in batches and settled per batch.

        Why: a consumer whose every message costs a broker round trip and a
        transaction cannot keep up with a busy queue; one that takes what is
        waiting (up to ``max_batch``, never waiting to fill a batch: one message
        alone goes at once) can apply it in one transaction and acknowledge it
        with one frame (AMQP ``multiple``).

        ``handler`` returns one :class:`Outcome` per message, in order: the bus
        sends the replies, dead-letters (``dead_reason``, as :meth:`consume`
        does), leaves on the queue (``requeue``) and acknowledges the rest, all
        only after ``handler`` returned. A handler that raises dead-letters the
        whole batch with the reason (it should settle bad messages itself).
        """

    @abc.abstractmethod
    async def request(
        self,
        name: str,
        body: bytes,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - how long the reply may take is part of the call
    ) -> bytes:
        """Send to work queue ``{ns}.{name}`` and wait for the reply.

        Raises ``TimeoutError`` when no reply came within ``timeout`` seconds and
        ``BusUnavailable`` when the connection was lost meanwhile.
        """


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to do with a work message once its handler is done."""

    reply: bytes | None = None
    dead_reason: str | None = None
    requeue: bool = False


def describe(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``: the reason of an unexpected failure, on one line."""
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


async def run_work_handler(handler: WorkHandler, message: WorkMessage, queue: str) -> Outcome:
    """Call ``handler`` and turn any way it ends into an :class:`Outcome`; never raises.

    Shared by both buses so that they settle a message exactly alike.
    """
    try:
        return Outcome(reply=await handler(message))
    except DeadLetter as dead:
        return Outcome(reply=dead.reply, dead_reason=dead.reason)
    except Requeue:
        return Outcome(requeue=True)
    except Exception as exc:
        reason = describe(exc)
        log.error("bus: handler of %s failed, message dead-lettered: %s", queue, reason)
        return Outcome(dead_reason=reason)


async def run_batch_handler(
    handler: BatchHandler, messages: Sequence[WorkMessage], queue: str
) -> list[Outcome]:
    """Call ``handler`` on a batch: one :class:`Outcome` per message; never raises."""
    try:
        outcomes = list(await handler(messages))
        if len(outcomes) != len(messages):
            raise ValueError(f"{len(outcomes)} outcomes for {len(messages)} messages")
    except Exception as exc:
        reason = describe(exc)
        log.error("bus: batch handler of %s failed, batch dead-lettered: %s", queue, reason)
        return [Outcome(dead_reason=reason)] * len(messages)
    return outcomes


def dead_headers(headers: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """The headers of a dead-lettered message: the original ones plus the reason."""
    return {**headers, REASON_HEADER: reason}


async def run_event_handler(handler: EventHandler, body: bytes, queue: str) -> None:
    """Decode ``body`` and call ``handler``; a bad body or failing handler is logged, not raised."""
    try:
        envelope = Envelope.from_bytes(body)
    except ValueError as exc:
        log.error("bus: dropped an undecodable event on %s: %s", queue, describe(exc))
        return
    try:
        await handler(envelope)
    except Exception as exc:
        log.error(
            "bus: handler of %s failed on %s #%d from %s: %s",
            queue,
            envelope.type,
            envelope.seq,
            envelope.stream,
            describe(exc),
        )
