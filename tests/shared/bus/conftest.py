"""Buses of both kinds on one fresh namespace, so each contract test runs against both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.bus import Bus
from shared.bus.amqp import AmqpBus
from shared.bus.memory import MemoryBroker, MemoryBus
from tests.conftest import RABBITMQ_URL
from tests.shared.bus.support import MakeBus


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.integration)])
async def make_bus(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[MakeBus]:
    """Started buses on one namespace (in memory: one broker); closed and removed afterwards."""
    broker = MemoryBroker()
    made: list[Bus] = []

    async def make(service: str = "test", instance: str = "i1") -> Bus:
        bus: Bus
        if request.param == "memory":
            bus = MemoryBus(broker, namespace, service, instance)
        else:
            bus = AmqpBus(RABBITMQ_URL, namespace, service, instance)
        await bus.start()
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close()
    for bus in made:
        if isinstance(bus, AmqpBus):
            await bus.delete_topology()
