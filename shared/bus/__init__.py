"""The event bus: typed events over a topic exchange, work queues, request/reply.

Two implementations share one interface: :class:`~shared.bus.amqp.AmqpBus`
(RabbitMQ through aio-pika) for deployments, and
:class:`~shared.bus.memory.MemoryBus` for the all-in-one process when no broker
is configured. Services code against :class:`Bus` only.
"""

from shared.bus.base import (
    REASON_HEADER,
    BatchHandler,
    Bus,
    BusUnavailable,
    DeadLetter,
    Envelope,
    EventHandler,
    Outcome,
    ReconnectListener,
    Requeue,
    WorkHandler,
    WorkMessage,
)
from shared.bus.topic import topic_matches

__all__ = [
    "REASON_HEADER",
    "BatchHandler",
    "Bus",
    "BusUnavailable",
    "DeadLetter",
    "Envelope",
    "EventHandler",
    "Outcome",
    "ReconnectListener",
    "Requeue",
    "WorkHandler",
    "WorkMessage",
    "topic_matches",
]
