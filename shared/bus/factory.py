"""Which bus a service gets: RabbitMQ when configured, else the in-process broker."""

from __future__ import annotations

from functools import cache

from shared.bus.base import Bus
from shared.bus.memory import MemoryBroker, MemoryBus
from shared.settings import Settings


@cache
def default_broker() -> MemoryBroker:
    """The broker shared by every service of this process that was not given one."""
    return MemoryBroker()


def make_bus(settings: Settings, service: str, broker: MemoryBroker | None = None) -> Bus:
    """An unstarted bus for ``service``; the runner calls ``start`` and ``close``."""
    if settings.rabbitmq_url:
        from shared.bus.amqp import AmqpBus

        return AmqpBus(settings.rabbitmq_url, settings.namespace, service, settings.instance)
    return MemoryBus(broker or default_broker(), settings.namespace, service, settings.instance)
